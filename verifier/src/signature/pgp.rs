//! OpenPGP detached signatures (armored or binary; ed25519, RSA, anything the `pgp` crate
//! verifies) over one file or over a `sha256sum`-style list that in turn covers the model.
//!
//! Stricter than `gpgv`, whose exit code is 0 for expired and revoked keys: a revoked key is
//! refused, and an expired key is refused unless the caller's [`PgpOptions`] accept a key
//! that was valid when it signed. Expiry is judged against the `now` the caller passes in.

use super::files::{self, Entry, ModelFiles};
use super::oms::{unix_secs, UnsignedFiles, DEFAULT_IGNORE_PATHS};
use super::report::{CoveredFile, Failure, FileDigest, Outcome, SignatureReport, Signer};
use crate::{Digest, VerifyError};
use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::KeyDetails as _;
use std::io::Read;
use std::time::SystemTime;

/// Bound on a keyring or signature file.
const MAX_PGP_BYTES: usize = 4 << 20;
/// Bound on a `SHA256SUMS` manifest.
const MAX_MANIFEST_BYTES: usize = 16 << 20;

/// The OpenPGP certificates (public keys) trusted to sign.
#[derive(Debug, Clone, Default)]
pub struct PgpKeyring {
    keys: Vec<SignedPublicKey>,
}

impl PgpKeyring {
    /// An empty keyring.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds every public key in `bytes` (ASCII-armored or binary, one or several keys).
    pub fn add(&mut self, bytes: &[u8]) -> Result<(), VerifyError> {
        let bad = |detail: String| VerifyError::TrustMaterial {
            what: "OpenPGP keyring",
            detail,
        };
        if bytes.len() > MAX_PGP_BYTES {
            return Err(VerifyError::TooLarge {
                what: "OpenPGP keyring",
                limit: MAX_PGP_BYTES as u64,
            });
        }
        let (keys, _) = SignedPublicKey::from_reader_many(bytes).map_err(|e| bad(e.to_string()))?;
        let before = self.keys.len();
        for key in keys {
            self.keys.push(key.map_err(|e| bad(e.to_string()))?);
        }
        if self.keys.len() == before {
            return Err(bad("no public key found".into()));
        }
        Ok(())
    }

    /// A keyring from one file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, VerifyError> {
        let mut ring = Self::new();
        ring.add(bytes)?;
        Ok(ring)
    }
}

/// How strict to be about the signing key's state.
#[derive(Debug, Clone)]
pub struct PgpOptions {
    /// Expired keys.
    pub expired: ExpiredKeys,
    /// Revoked keys.
    pub revoked: RevokedKeys,
    /// For a `SHA256SUMS` manifest: files of the model that the list does not name.
    pub unsigned_files: UnsignedFiles,
    /// For a `SHA256SUMS` manifest: model-relative paths (and directory prefixes) not expected
    /// in the list. Defaults to the git paths. Ignored files are reported, never covered.
    pub ignore_paths: Vec<String>,
}

impl Default for PgpOptions {
    fn default() -> Self {
        PgpOptions {
            expired: ExpiredKeys::default(),
            revoked: RevokedKeys::default(),
            unsigned_files: UnsignedFiles::default(),
            ignore_paths: DEFAULT_IGNORE_PATHS.iter().map(|s| s.to_string()).collect(),
        }
    }
}

/// What to do when the signing key has an expiry date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpiredKeys {
    /// The key must be unexpired at `now` (and at signing time).
    #[default]
    Refuse,
    /// The key must have been unexpired when the signature was made (Sequoia `sqv`'s rule):
    /// a release signed by a key that has since expired still verifies. The signature's own
    /// creation time is what dates it, so this trusts the signer's clock.
    AcceptIfValidWhenSigned,
}

/// What to do when the signing key carries a valid revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RevokedKeys {
    /// Refuse (a revocation may mean the key was compromised; the signature time cannot be
    /// trusted then).
    #[default]
    Refuse,
    /// Ignore revocations. Only for re-checking an archive against a key retired for
    /// administrative reasons; never for keys revoked as compromised.
    Accept,
}

/// Verifies a detached OpenPGP `signature` over `data` (read to the end) with `keyring`.
/// The report covers the one artifact, as `"."`, with its sha256.
pub fn verify_pgp_detached(
    data: impl Read,
    signature: &[u8],
    keyring: &PgpKeyring,
    options: &PgpOptions,
    now: SystemTime,
) -> Result<SignatureReport, VerifyError> {
    let mut hashing = Sha256Reader {
        inner: data,
        hasher: <sha2::Sha256 as sha2::Digest>::new(),
    };
    let signer = match check(&mut hashing, signature, keyring, options, unix_secs(now))? {
        Ok(signer) => signer,
        Err(failure) => return Ok(SignatureReport::failed(failure)),
    };
    let digest = sha2::Digest::finalize(hashing.hasher);
    Ok(SignatureReport {
        outcome: Outcome::Verified {
            signer,
            covered: vec![CoveredFile {
                path: ".".to_string(),
                digests: vec![FileDigest {
                    algorithm: "sha256".to_string(),
                    range: None,
                    hex: hex::encode(digest),
                }],
            }],
            ignored: Vec::new(),
            unsigned: Vec::new(),
        },
    })
}

/// Verifies a detached OpenPGP `signature` over a `sha256sum`-style `manifest`, then checks
/// `files` against the manifest: every listed file present with that sha256, and no other file
/// unless ignored (or tolerated by `options.unsigned_files`). Remove the manifest and signature
/// files themselves from `files` if they live in the model.
pub fn verify_pgp_manifest(
    manifest: &[u8],
    signature: &[u8],
    keyring: &PgpKeyring,
    files: &ModelFiles,
    options: &PgpOptions,
    now: SystemTime,
) -> Result<SignatureReport, VerifyError> {
    if manifest.len() > MAX_MANIFEST_BYTES {
        return Ok(SignatureReport::failed(Failure::Malformed {
            what: "SHA256SUMS",
            detail: "larger than 16 MiB".into(),
        }));
    }
    let signer = match check(manifest, signature, keyring, options, unix_secs(now))? {
        Ok(signer) => signer,
        Err(failure) => return Ok(SignatureReport::failed(failure)),
    };
    let listed = match parse_sha256sums(manifest) {
        Ok(listed) => listed,
        Err(failure) => return Ok(SignatureReport::failed(failure)),
    };
    let mut covered = Vec::new();
    let mut ignored = Vec::new();
    let mut unsigned = Vec::new();
    for (name, entry) in files.iter() {
        let Entry::File { path, sha256 } = entry else {
            return Ok(SignatureReport::failed(Failure::NotRegularFile {
                path: name.to_string(),
            }));
        };
        if let Some(expected) = listed.get(name) {
            let actual = match sha256 {
                Some(d) => *d,
                None => {
                    let file =
                        std::fs::File::open(path).map_err(|source| VerifyError::ReadPath {
                            path: path.clone(),
                            source,
                        })?;
                    sha256_of(file).map_err(|source| VerifyError::ReadPath {
                        path: path.clone(),
                        source,
                    })?
                }
            };
            if actual != *expected {
                return Ok(SignatureReport::failed(Failure::DigestMismatch {
                    path: name.to_string(),
                    algorithm: "sha256".into(),
                }));
            }
            covered.push(CoveredFile {
                path: name.to_string(),
                digests: vec![FileDigest {
                    algorithm: "sha256".into(),
                    range: None,
                    hex: actual.hex(),
                }],
            });
        } else if options.ignore_paths.iter().any(|p| {
            name == p
                || name
                    .strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        }) {
            ignored.push(name.to_string());
        } else if options.unsigned_files == UnsignedFiles::Exclude {
            unsigned.push(name.to_string());
        } else {
            return Ok(SignatureReport::failed(Failure::UnsignedFile {
                path: name.to_string(),
            }));
        }
    }
    for name in listed.keys() {
        if files.get(name).is_none() {
            return Ok(SignatureReport::failed(Failure::MissingFile {
                path: name.clone(),
            }));
        }
    }
    Ok(SignatureReport {
        outcome: Outcome::Verified {
            signer,
            covered,
            ignored,
            unsigned,
        },
    })
}

/// Parses `sha256sum` output: `<64 hex><space><space or *><name>` per line.
fn parse_sha256sums(
    manifest: &[u8],
) -> Result<std::collections::BTreeMap<String, Digest>, Failure> {
    let bad = |detail: String| Failure::Malformed {
        what: "SHA256SUMS",
        detail,
    };
    let text = std::str::from_utf8(manifest).map_err(|e| bad(e.to_string()))?;
    let mut listed = std::collections::BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let (hex, rest) = line
            .split_at_checked(64)
            .ok_or_else(|| bad(format!("line {}: too short", n + 1)))?;
        let digest =
            Digest::from_hex(hex).map_err(|_| bad(format!("line {}: bad digest", n + 1)))?;
        let name = rest
            .strip_prefix("  ")
            .or_else(|| rest.strip_prefix(" *"))
            .ok_or_else(|| bad(format!("line {}: expected two spaces or ' *'", n + 1)))?;
        // sha256sum run as `sha256sum ./x` writes "./x"; that prefix names the same file.
        let name = name.strip_prefix("./").unwrap_or(name);
        if files::unsafe_name(name).is_some() {
            return Err(Failure::UnsafeResourceName {
                name: name.to_string(),
            });
        }
        if listed.insert(name.to_string(), digest).is_some() {
            return Err(Failure::DuplicateResource {
                name: name.to_string(),
            });
        }
    }
    Ok(listed)
}

fn sha256_of(mut file: impl Read) -> std::io::Result<Digest> {
    let mut reader = Sha256Reader {
        inner: &mut file,
        hasher: <sha2::Sha256 as sha2::Digest>::new(),
    };
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok(Digest::from_bytes(
        sha2::Digest::finalize(reader.hasher).into(),
    ))
}

struct Sha256Reader<R> {
    inner: R,
    hasher: sha2::Sha256,
}

impl<R: Read> Read for Sha256Reader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        sha2::Digest::update(&mut self.hasher, &buf[..n]);
        Ok(n)
    }
}

fn fingerprint_hex(fp: &pgp::types::Fingerprint) -> String {
    format!("{fp:X}")
}

/// Seconds a signature says it was made; `None` if it carries no creation time.
fn created(sig: &Signature) -> Option<u64> {
    sig.created().map(|t| u64::from(t.as_secs()))
}

fn expiry_secs(d: Option<pgp::types::Duration>) -> Option<u64> {
    // A zero duration means "no expiry" on the wire.
    d.map(|d| std::time::Duration::from(d).as_secs())
        .filter(|&s| s > 0)
}

/// Reads the signature, finds the key that made it, checks the key's state, and verifies the
/// signature over `data`.
fn check(
    data: impl Read,
    signature: &[u8],
    keyring: &PgpKeyring,
    options: &PgpOptions,
    now: u64,
) -> Result<Result<Signer, Failure>, VerifyError> {
    if signature.len() > MAX_PGP_BYTES {
        return Ok(Err(Failure::Malformed {
            what: "OpenPGP signature",
            detail: "larger than 4 MiB".into(),
        }));
    }
    let sig = match DetachedSignature::from_reader_single(signature) {
        Ok((sig, _)) => sig.signature,
        Err(e) => {
            return Ok(Err(Failure::Malformed {
                what: "OpenPGP signature",
                detail: e.to_string(),
            }))
        }
    };
    if !matches!(
        sig.typ(),
        Some(SignatureType::Binary) | Some(SignatureType::Text)
    ) {
        return Ok(Err(Failure::Unsupported {
            what: "OpenPGP signature type",
            found: format!("{:?}", sig.typ()),
        }));
    }
    let Some(signed_at) = created(&sig) else {
        return Ok(Err(Failure::Malformed {
            what: "OpenPGP signature",
            detail: "no creation time".into(),
        }));
    };
    if let Some(lifetime) = expiry_secs(sig.signature_expiration_time()) {
        if now >= signed_at.saturating_add(lifetime) {
            return Ok(Err(Failure::SignatureTime {
                signed_at,
                detail: format!("the signature itself expired {lifetime} s after it was made"),
            }));
        }
    }
    let issuers: Vec<String> = sig
        .issuer_fingerprint()
        .iter()
        .map(|f| fingerprint_hex(f))
        .chain(
            sig.issuer_key_id()
                .iter()
                .map(|k| hex::encode_upper(k.as_ref())),
        )
        .collect();

    // Find the (sub)key named by the signature's issuer subpackets.
    for cert in &keyring.keys {
        let primary = &cert.primary_key;
        let names = |fp: pgp::types::Fingerprint, id: pgp::types::KeyId| {
            sig.issuer_fingerprint().iter().any(|f| **f == fp)
                || sig.issuer_key_id().iter().any(|k| **k == id)
        };
        if names(primary.fingerprint(), primary.legacy_key_id()) {
            let state = key_state(cert, None, signed_at, options, now);
            return finish(data, &sig, primary, cert, state, signed_at, options);
        }
        for sub in &cert.public_subkeys {
            if names(sub.key.fingerprint(), sub.key.legacy_key_id()) {
                let state = key_state(cert, Some(sub), signed_at, options, now);
                return finish(data, &sig, &sub.key, cert, state, signed_at, options);
            }
        }
    }
    Ok(Err(Failure::UnknownSigner {
        issuer: issuers.join(","),
    }))
}

fn finish(
    data: impl Read,
    sig: &Signature,
    key: &impl pgp::types::VerifyingKey,
    cert: &SignedPublicKey,
    state: Result<(), Failure>,
    signed_at: u64,
    _options: &PgpOptions,
) -> Result<Result<Signer, Failure>, VerifyError> {
    // The cryptographic check first: a bad signature is reported as bad even if the key is
    // also expired, which is the more useful message.
    if sig.verify(key, data).is_err() {
        return Ok(Err(Failure::BadSignature));
    }
    if let Err(failure) = state {
        return Ok(Err(failure));
    }
    let user_ids = cert
        .details
        .users
        .iter()
        .filter(|u| {
            u.signatures.iter().any(|s| {
                s.verify_certification(&cert.primary_key, pgp::types::Tag::UserId, &u.id)
                    .is_ok()
            })
        })
        .map(|u| String::from_utf8_lossy(u.id.id()).into_owned())
        .collect();
    Ok(Ok(Signer::Pgp {
        fingerprint: fingerprint_hex(&cert.primary_key.fingerprint()),
        signing_key: fingerprint_hex(&key.fingerprint()),
        user_ids,
        signed_at,
    }))
}

/// Whether the key (primary, or `sub` bound to it) may have made a signature at `signed_at`,
/// judged at `now` under `options`.
fn key_state(
    cert: &SignedPublicKey,
    sub: Option<&pgp::composed::SignedPublicSubKey>,
    signed_at: u64,
    options: &PgpOptions,
    now: u64,
) -> Result<(), Failure> {
    let primary = &cert.primary_key;
    let fingerprint = fingerprint_hex(&primary.fingerprint());
    let malformed = |detail: &str| Failure::Malformed {
        what: "OpenPGP key",
        detail: format!("{fingerprint}: {detail}"),
    };

    // Self-signatures that verify: user id certifications and direct-key signatures.
    let mut self_sigs: Vec<&Signature> = Vec::new();
    for user in &cert.details.users {
        for s in &user.signatures {
            if s.verify_certification(primary, pgp::types::Tag::UserId, &user.id)
                .is_ok()
            {
                self_sigs.push(s);
            }
        }
    }
    for s in &cert.details.direct_signatures {
        if s.verify_key(primary).is_ok() {
            self_sigs.push(s);
        }
    }
    // The newest self-signature states the key's current expiry.
    let Some(newest) = self_sigs.iter().max_by_key(|s| created(s).unwrap_or(0)) else {
        return Err(malformed("no valid self-signature"));
    };

    if options.revoked == RevokedKeys::Refuse {
        let revoked = cert
            .details
            .revocation_signatures
            .iter()
            .any(|s| s.verify_key(primary).is_ok());
        let sub_revoked = sub.is_some_and(|sub| {
            sub.signatures.iter().any(|s| {
                s.typ() == Some(SignatureType::SubkeyRevocation)
                    && s.verify_subkey_binding(primary, &sub.key).is_ok()
            })
        });
        if revoked {
            return Err(Failure::KeyRevoked { fingerprint });
        }
        if let (true, Some(sub)) = (sub_revoked, sub) {
            return Err(Failure::KeyRevoked {
                fingerprint: fingerprint_hex(&sub.key.fingerprint()),
            });
        }
    }

    let mut expiries = Vec::new();
    let primary_created = u64::from(primary.created_at().as_secs());
    if let Some(secs) = expiry_secs(newest.key_expiration_time()) {
        expiries.push((primary_created.saturating_add(secs), fingerprint.clone()));
    }
    let mut key_created = primary_created;
    if let Some(sub) = sub {
        let binding = sub
            .signatures
            .iter()
            .filter(|s| {
                s.typ() == Some(SignatureType::SubkeyBinding)
                    && s.verify_subkey_binding(primary, &sub.key).is_ok()
            })
            .max_by_key(|s| created(s).unwrap_or(0));
        let Some(binding) = binding else {
            return Err(malformed("signing subkey has no valid binding signature"));
        };
        if !binding.key_flags().sign() {
            return Err(malformed("subkey is not for signing"));
        }
        key_created = u64::from(sub.key.created_at().as_secs());
        if let Some(secs) = expiry_secs(binding.key_expiration_time()) {
            expiries.push((
                key_created.saturating_add(secs),
                fingerprint_hex(&sub.key.fingerprint()),
            ));
        }
    }
    if signed_at < key_created {
        return Err(Failure::SignatureTime {
            signed_at,
            detail: "made before the key existed".into(),
        });
    }
    if signed_at > now {
        return Err(Failure::SignatureTime {
            signed_at,
            detail: format!("in the future (now {now})"),
        });
    }
    // The earliest expiry of the primary and the signing subkey is the one that counts; the
    // failure names the key that expired.
    if let Some((expired_at, expired_key)) = expiries.into_iter().min() {
        let judged_at = match options.expired {
            ExpiredKeys::Refuse => now.max(signed_at),
            ExpiredKeys::AcceptIfValidWhenSigned => signed_at,
        };
        if judged_at >= expired_at {
            return Err(Failure::KeyExpired {
                fingerprint: expired_key,
                expired_at,
            });
        }
    }
    Ok(())
}
