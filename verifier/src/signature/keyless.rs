//! Sigstore bundles (v0.1–v0.3, message signature or DSSE), keyless or managed-key, verified
//! offline against a `trusted_root.json` with the Sigstore project's `sigstore-verify` crate
//! (70/70 on sigstore-conformance; the older `sigstore` crate accepts forged checkpoints).
//!
//! Clock: `sigstore-verify` reads the wall clock itself in two places, to refuse a log entry
//! whose integrated time lies in the future and to pick the log keys valid "now". Every other
//! time it uses is an authenticated signing time (Rekor SET, RFC 3161 timestamp). It offers no
//! way to pass the time in; this is the one exception to the crate's no-clock rule.

use super::bundle::{self, Bundle};
use super::key::PublicKey;
use super::report::{CoveredFile, Failure, FileDigest, Outcome, SignatureReport, Signer};
use crate::{Digest, VerifyError};
use serde::Deserialize;
use sigstore_verify::trust_root::TrustedRoot;
use sigstore_verify::types::{ArtifactDigest, DerPublicKey, Sha256Hash};
use sigstore_verify::{PublicKeyVerificationPolicy, VerificationPolicy, Verifier};

/// Bound on a bundle or trusted root file.
const MAX_JSON_BYTES: usize = 16 << 20;

/// Who may sign a Sigstore bundle, and the trust root to check it against.
#[derive(Debug, Clone)]
pub struct SigstorePolicy {
    trusted_root: TrustedRoot,
    signer: SigstoreSigner,
}

/// The signer a Sigstore policy requires.
#[derive(Debug, Clone)]
pub enum SigstoreSigner {
    /// Keyless: the Fulcio certificate's identity (SAN, exact match) and OIDC issuer.
    Identity {
        /// e.g. `https://github.com/org/repo/.github/workflows/release.yml@refs/heads/main`.
        identity: String,
        /// e.g. `https://token.actions.githubusercontent.com`.
        issuer: String,
    },
    /// A managed key (the bundle carries a key hint, not a certificate).
    Key(PublicKey),
}

/// What a generic Sigstore bundle signs.
#[derive(Debug, Clone, Copy)]
pub enum SigstoreArtifact<'a> {
    /// The artifact's bytes.
    Bytes(&'a [u8]),
    /// The artifact's sha256, when the bytes are elsewhere (already hashed by the caller).
    /// Enough for DSSE bundles and SHA-256 message signatures; a message signature whose
    /// scheme hashes with SHA-384/512 needs the bytes.
    Sha256(Digest),
}

impl SigstorePolicy {
    /// Reads a `trusted_root.json`, or a ClientTrustConfig (whose `trustedRoot` member is used).
    pub fn new(trusted_root_json: &[u8], signer: SigstoreSigner) -> Result<Self, VerifyError> {
        let bad = |detail: String| VerifyError::TrustMaterial {
            what: "sigstore trusted root",
            detail,
        };
        if trusted_root_json.len() > MAX_JSON_BYTES {
            return Err(VerifyError::TooLarge {
                what: "trusted root",
                limit: MAX_JSON_BYTES as u64,
            });
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct ClientTrustConfig {
            trusted_root: serde_json::Value,
        }
        let text = match serde_json::from_slice::<ClientTrustConfig>(trusted_root_json) {
            // The trust root is configuration, not signed payload: re-serialising it is safe.
            Ok(config) => config.trusted_root.to_string(),
            Err(_) => {
                String::from_utf8(trusted_root_json.to_vec()).map_err(|e| bad(e.to_string()))?
            }
        };
        let trusted_root = TrustedRoot::from_json(&text).map_err(|e| bad(e.to_string()))?;
        // Build a verifier once now so that unusable trust material is an error here, not a
        // verification failure blamed on each bundle later.
        Verifier::new(&trusted_root).map_err(|e| bad(e.to_string()))?;
        Ok(SigstorePolicy {
            trusted_root,
            signer,
        })
    }
}

/// Verifies a Sigstore bundle over `artifact` under `policy`.
pub fn verify_sigstore_bundle(
    artifact: SigstoreArtifact<'_>,
    bundle_json: &[u8],
    policy: &SigstorePolicy,
) -> Result<SignatureReport, VerifyError> {
    let digest = match artifact {
        SigstoreArtifact::Bytes(bytes) => Digest::of(bytes),
        SigstoreArtifact::Sha256(d) => d,
    };
    let outcome = match parse(bundle_json) {
        Ok(bundle) => {
            let result = match artifact {
                SigstoreArtifact::Bytes(bytes) => run(bytes, &bundle, policy),
                SigstoreArtifact::Sha256(d) => run(
                    ArtifactDigest::sha256(Sha256Hash::new(*d.as_bytes())),
                    &bundle,
                    policy,
                ),
            };
            result?
        }
        Err(failure) => Err(failure),
    };
    Ok(match outcome {
        Ok(signer) => SignatureReport {
            outcome: Outcome::Verified {
                signer,
                covered: vec![CoveredFile {
                    path: ".".to_string(),
                    digests: vec![FileDigest {
                        algorithm: "sha256".to_string(),
                        range: None,
                        hex: digest.hex(),
                    }],
                }],
                ignored: Vec::new(),
                unsigned: Vec::new(),
            },
        },
        Err(failure) => SignatureReport::failed(failure),
    })
}

/// The keyless method of model signing: verifies the bundle with the statement's subject
/// digest as the artifact, and returns the raw payload for the model checks.
pub(crate) fn verify_model_bundle(
    raw: &[u8],
    lenient: &Bundle,
    policy: &SigstorePolicy,
) -> Result<Result<(Signer, Vec<u8>), Failure>, VerifyError> {
    let Some(envelope) = &lenient.dsse_envelope else {
        return Ok(Err(Failure::Malformed {
            what: "bundle",
            detail: "no dsseEnvelope".into(),
        }));
    };
    if envelope.payload_type != bundle::IN_TOTO {
        return Ok(Err(Failure::Unsupported {
            what: "DSSE payloadType",
            found: envelope.payload_type.clone(),
        }));
    }
    let Some(payload) = bundle::decode_b64(&envelope.payload) else {
        return Ok(Err(Failure::Malformed {
            what: "envelope",
            detail: "payload is not base64".into(),
        }));
    };
    #[derive(Deserialize)]
    struct Subjects {
        subject: Vec<SubjectDigest>,
    }
    #[derive(Deserialize)]
    struct SubjectDigest {
        digest: std::collections::BTreeMap<String, String>,
    }
    let subject = serde_json::from_slice::<Subjects>(&payload)
        .ok()
        .and_then(|s| match s.subject.as_slice() {
            [one] => one
                .digest
                .get("sha256")
                .and_then(|h| Digest::from_hex(h).ok()),
            _ => None,
        });
    let Some(subject) = subject else {
        return Ok(Err(Failure::Statement {
            detail: "keyless model signature needs exactly one subject with a sha256 digest".into(),
        }));
    };
    let bundle = match parse(raw) {
        Ok(b) => b,
        Err(failure) => return Ok(Err(failure)),
    };
    let artifact = ArtifactDigest::sha256(Sha256Hash::new(*subject.as_bytes()));
    Ok(run(artifact, &bundle, policy)?.map(|signer| (signer, payload)))
}

fn parse(json: &[u8]) -> Result<sigstore_verify::types::Bundle, Failure> {
    if json.len() > MAX_JSON_BYTES {
        return Err(Failure::Malformed {
            what: "bundle",
            detail: "larger than 16 MiB".into(),
        });
    }
    let text = std::str::from_utf8(json).map_err(|e| Failure::Malformed {
        what: "bundle",
        detail: e.to_string(),
    })?;
    sigstore_verify::types::Bundle::from_json(text).map_err(|e| Failure::Malformed {
        what: "bundle",
        detail: e.to_string(),
    })
}

fn run<'a>(
    artifact: impl Into<sigstore_verify::types::Artifact<'a>>,
    bundle: &sigstore_verify::types::Bundle,
    policy: &SigstorePolicy,
) -> Result<Result<Signer, Failure>, VerifyError> {
    let verifier = Verifier::new(&policy.trusted_root).map_err(|e| VerifyError::TrustMaterial {
        what: "sigstore trusted root",
        detail: e.to_string(),
    })?;
    match &policy.signer {
        SigstoreSigner::Identity { identity, issuer } => {
            let rules = VerificationPolicy::new(identity.as_str(), issuer.as_str());
            match verifier.verify(artifact, bundle, &rules) {
                Ok(result) => Ok(Ok(Signer::Sigstore {
                    identity: result
                        .identity()
                        .map(|i| i.as_str().to_string())
                        .unwrap_or_default(),
                    issuer: result.issuer().unwrap_or_default().to_string(),
                })),
                Err(
                    sigstore_verify::Error::IdentityMismatch { .. }
                    | sigstore_verify::Error::IssuerMismatch { .. },
                ) => {
                    let info = bundle
                        .signing_certificate()
                        .and_then(|c| sigstore_verify::crypto::parse_certificate_info(c).ok());
                    Ok(Err(Failure::WrongSigner {
                        found_identity: info
                            .as_ref()
                            .and_then(|i| i.identity.as_ref())
                            .map(|i| i.as_str().to_string())
                            .unwrap_or_default(),
                        found_issuer: info.and_then(|i| i.issuer).unwrap_or_default(),
                        required_identity: identity.clone(),
                        required_issuer: issuer.clone(),
                    }))
                }
                Err(e) => Ok(Err(Failure::Sigstore {
                    detail: e.to_string(),
                })),
            }
        }
        SigstoreSigner::Key(key) => {
            let rules = PublicKeyVerificationPolicy::new(DerPublicKey::from_bytes(key.spki_der()));
            match verifier.verify(artifact, bundle, &rules) {
                Ok(_) => Ok(Ok(Signer::SigstoreKey {
                    spki_sha256: key.spki_sha256(),
                })),
                Err(e) => Ok(Err(Failure::Sigstore {
                    detail: e.to_string(),
                })),
            }
        }
    }
}
