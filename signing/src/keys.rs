//! Ed25519 keys: the governance key that signs approvals and revocations, and the mirror's own key
//! that signs audit entries.
//!
//! Files are PEM: the private key as PKCS#8 (`-----BEGIN PRIVATE KEY-----`, written with mode
//! 0600), the public key as SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`), the forms that
//! `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` use.

use crate::error::SigningError;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::Digest as _;
use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

/// Key files are a few hundred bytes; anything much larger is not a key.
const MAX_KEY_FILE: u64 = 16 * 1024;

/// A signing key pair. The secret half is wiped from memory on drop and never printed.
pub struct KeyPair {
    secret: SigningKey,
}

/// A public key that signatures are checked against.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
}

/// The short name of a public key: the first 16 hex digits of the sha256 of its 32 raw bytes.
/// Shown to people and written into `signed_by`/`key` fields; the full key is still needed to
/// verify anything.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyPair {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, SigningError> {
        let mut seed = [0u8; 32];
        getrandom::getrandom(&mut seed).map_err(SigningError::Random)?;
        let pair = KeyPair::from_seed(&seed);
        seed.fill(0);
        Ok(pair)
    }

    /// The key whose 32-byte Ed25519 secret is `seed` (RFC 8032). For tests and known-answer
    /// checks; real keys come from [`KeyPair::generate`].
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        KeyPair {
            secret: SigningKey::from_bytes(seed),
        }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.secret.verifying_key(),
        }
    }

    /// Writes the private key as PKCS#8 PEM, mode 0600, refusing to replace an existing file
    /// (overwriting a governance key would orphan every record it signed).
    pub fn write_private(&self, path: &Path) -> Result<(), SigningError> {
        let pem =
            self.secret
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|_| SigningError::BadKeyFile {
                    path: path.to_owned(),
                    expected: "encodable Ed25519 private key",
                })?;
        write_new(path, pem.as_bytes(), 0o600)
    }

    /// Reads a PKCS#8 PEM private key.
    pub fn read_private(path: &Path) -> Result<Self, SigningError> {
        let bytes = crate::canonical::read_bounded(path, MAX_KEY_FILE)?;
        let bad = || SigningError::BadKeyFile {
            path: path.to_owned(),
            expected: "PKCS#8 PEM Ed25519 private key (-----BEGIN PRIVATE KEY-----)",
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
        let secret = SigningKey::from_pkcs8_pem(text).map_err(|_| bad())?;
        Ok(KeyPair { secret })
    }

    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
        self.secret.sign(message)
    }
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({})", self.public().id())
    }
}

impl PublicKey {
    /// The key's short id.
    pub fn id(&self) -> KeyId {
        let h = sha2::Sha256::digest(self.key.as_bytes());
        KeyId(hex::encode(&h[..8]))
    }

    /// The 32 raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// Parses SubjectPublicKeyInfo PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(text: &str) -> Result<Self, SigningError> {
        let key = VerifyingKey::from_public_key_pem(text).map_err(|_| SigningError::Invalid {
            field: "public key",
            why: "expected an Ed25519 SubjectPublicKeyInfo PEM (-----BEGIN PUBLIC KEY-----)",
        })?;
        Ok(PublicKey { key })
    }

    /// SubjectPublicKeyInfo PEM.
    pub fn to_pem(&self) -> Result<String, SigningError> {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|_| SigningError::Invalid {
                field: "public key",
                why: "cannot be encoded as PEM",
            })
    }

    /// Reads a public key file.
    pub fn read(path: &Path) -> Result<Self, SigningError> {
        let bytes = crate::canonical::read_bounded(path, MAX_KEY_FILE)?;
        let bad = || SigningError::BadKeyFile {
            path: path.to_owned(),
            expected: "PEM Ed25519 public key (-----BEGIN PUBLIC KEY-----)",
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
        PublicKey::from_pem(text).map_err(|_| bad())
    }

    /// Writes the public key file (mode 0644), refusing to replace an existing file.
    pub fn write(&self, path: &Path) -> Result<(), SigningError> {
        write_new(path, self.to_pem()?.as_bytes(), 0o644)
    }

    /// Checks `signature` over `message`. `verify_strict` rejects the malleable and weak-key
    /// cases that plain RFC 8032 verification lets through, so one message has one valid
    /// signature per key.
    pub(crate) fn verifies(&self, message: &[u8], signature: &Signature) -> bool {
        self.key.verify_strict(message, signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

impl KeyId {
    /// The id as 16 lowercase hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyId {
    type Err = SigningError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 16 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(KeyId(s.to_owned()))
        } else {
            Err(SigningError::Invalid {
                field: "key id",
                why: "expected 16 lowercase hex digits",
            })
        }
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Creates `path` (never replacing a file), writes `bytes` and syncs them.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), SigningError> {
    let io = |source: std::io::Error| {
        if source.kind() == std::io::ErrorKind::AlreadyExists {
            SigningError::Exists {
                path: path.to_owned(),
            }
        } else {
            SigningError::Io {
                path: path.to_owned(),
                source,
            }
        }
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        // Set at creation, so the secret is never readable by others, not even briefly.
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 §7.1, TEST 1.
    const RFC8032_SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC8032_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const RFC8032_SIG: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";

    fn rfc_key() -> KeyPair {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(RFC8032_SECRET, &mut seed).unwrap();
        KeyPair::from_seed(&seed)
    }

    #[test]
    fn rfc8032_known_answer() {
        let k = rfc_key();
        assert_eq!(hex::encode(k.public().as_bytes()), RFC8032_PUBLIC);
        let sig = k.sign(b"");
        assert_eq!(hex::encode(sig.to_bytes()), RFC8032_SIG);
        assert!(k.public().verifies(b"", &sig));
        assert!(!k.public().verifies(b"x", &sig));
    }

    #[test]
    fn key_id_is_sha256_prefix() {
        let id = rfc_key().public().id();
        let mut raw = [0u8; 32];
        hex::decode_to_slice(RFC8032_PUBLIC, &mut raw).unwrap();
        let want = hex::encode(&sha2::Sha256::digest(raw)[..8]);
        assert_eq!(id.as_str(), want);
        assert_eq!(id.as_str().parse::<KeyId>().unwrap(), id);
        assert!("ABCDEF0123456789".parse::<KeyId>().is_err());
        assert!("abc".parse::<KeyId>().is_err());
    }

    #[test]
    fn files_round_trip_and_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let k = KeyPair::generate().unwrap();
        let sk = dir.path().join("governance.key");
        let pk = dir.path().join("governance.pub");
        k.write_private(&sk).unwrap();
        k.public().write(&pk).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&sk).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let text = std::fs::read_to_string(&sk).unwrap();
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
        let back = KeyPair::read_private(&sk).unwrap();
        assert_eq!(back.public(), k.public());
        assert_eq!(PublicKey::read(&pk).unwrap(), k.public());
        // Never overwrite a key.
        assert!(matches!(
            k.write_private(&sk),
            Err(SigningError::Exists { .. })
        ));
        // A public key is not a private key and vice versa.
        assert!(matches!(
            KeyPair::read_private(&pk),
            Err(SigningError::BadKeyFile { .. })
        ));
        assert!(matches!(
            PublicKey::read(&sk),
            Err(SigningError::BadKeyFile { .. })
        ));
        assert!(!format!("{k:?}").contains(&text[30..50]));
    }
}
