//! OpenSSF model signing (`model.sig`, model_signing 1.x): Sigstore bundle ⊃ DSSE envelope ⊃
//! in-toto Statement v1 with predicate `https://model_signing/signature/v1.0` (and, if the
//! policy allows, the legacy `https://model_signing/Digests/v0.1` shape).
//!
//! Order of work: the signature first (over the raw payload bytes, never a re-serialisation),
//! then the statement's shape, resource names and root digest (cheap, and they need no file),
//! then the file set (missing, unsigned, not regular), and the file digests last because they
//! read every byte.

use super::bundle::{self, Bundle};
use super::cert::{self, TrustAnchor};
use super::dsse;
use super::files::{self, Entry, ModelFiles};
use super::key::{Hash, PublicKey};
use super::keyless::{self, SigstorePolicy};
use super::report::{CoveredFile, Failure, FileDigest, Outcome, SignatureReport, Signer};
use crate::VerifyError;
use serde::Deserialize;
use sha2::Digest as _;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, SeekFrom};
use std::time::SystemTime;

/// A `model.sig` larger than this is not a signature anyone produced; refusing it bounds memory.
const MAX_SIGNATURE_BYTES: usize = 16 << 20;
/// Bound on the number of signed resources (files or shards).
const MAX_RESOURCES: usize = 1_000_000;

const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
const PREDICATE_V1: &str = "https://model_signing/signature/v1.0";
const PREDICATE_LEGACY: &str = "https://model_signing/Digests/v0.1";

/// Paths model_signing ignores at the model root by default (and records since v1.1.0).
/// Signatures from v1.0.1 and older do not record them, so the verifier supplies them.
pub const DEFAULT_IGNORE_PATHS: [&str; 4] = [".git", ".gitattributes", ".github", ".gitignore"];

/// What a model signature must satisfy to be accepted.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    /// Who may sign, and how that is established.
    pub method: TrustMethod,
    /// What to do with files that are neither signed nor ignored.
    pub unsigned_files: UnsignedFiles,
    /// Whether the `ignore_paths` the signer recorded in the statement are applied.
    pub signer_ignore_paths: SignerIgnorePaths,
    /// Model-relative paths (and directory prefixes) the verifier ignores in addition to the
    /// signer's. Defaults to [`DEFAULT_IGNORE_PATHS`]. Ignored files are reported, never
    /// covered: the mirror must not serve them.
    pub extra_ignore_paths: Vec<String>,
    /// Whether the legacy v0.2 format is accepted.
    pub legacy: LegacyFormat,
}

/// How the signer is established.
#[derive(Debug, Clone)]
pub enum TrustMethod {
    /// ECDSA P-256/384/521 public keys (model_signing `key` method). The bundle's
    /// `publicKey.hint` (or older `rawBytes`), when present, must name one of them.
    Key {
        /// The trusted keys.
        keys: Vec<PublicKey>,
    },
    /// X.509 certificates (model_signing `certificate` method): the bundle's chain must lead
    /// to one of the anchors, and the leaf must be for signing.
    Certificate {
        /// The trusted anchors.
        anchors: Vec<TrustAnchor>,
        /// Which configured certificates may end a chain.
        rule: AnchorRule,
        /// At what time the chain must be valid.
        time: CertificateTime,
    },
    /// Sigstore keyless (Fulcio certificate, Rekor log, timestamps) against a trusted root.
    /// Boxed: a trusted root is large next to the other variants.
    Sigstore(Box<SigstorePolicy>),
}

/// Which configured certificates may end a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AnchorRule {
    /// Only self-signed configured certificates are anchors (OpenSSL's default, and so
    /// model_signing's): configuring an intermediate alone trusts nothing.
    #[default]
    SelfSignedRoots,
    /// Every configured certificate is an anchor, self-signed or not (OpenSSL's
    /// `PARTIAL_CHAIN`): configuring an intermediate trusts exactly what it issued.
    AnyConfigured,
}

/// At what time a certificate chain must be valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertificateTime {
    /// At the verification time the caller passes in: an expired leaf fails.
    #[default]
    Now,
    /// At the leaf's notBefore, as model_signing does: a leaf that has since expired still
    /// passes. For publishers whose short-lived signing certificates have no timestamp.
    LeafNotBefore,
}

/// What to do with files present but neither signed nor ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnsignedFiles {
    /// Fail naming the file.
    #[default]
    Refuse,
    /// Verify anyway and list them in the report's `unsigned`; they are not covered and must
    /// not be served (model_signing's `--ignore_unsigned_files`).
    Exclude,
}

/// Whether the signer's recorded `ignore_paths` are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SignerIgnorePaths {
    /// Apply them (model_signing always does). Files they match are reported as ignored.
    #[default]
    Honour,
    /// Do not apply them: a file the signer excluded counts as unsigned.
    Disregard,
}

/// Whether the legacy v0.2 format (predicate `Digests/v0.1`, per-file subjects, the buggy
/// `DSSEV1 … b'…'` PAE with SHA-256) is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LegacyFormat {
    /// Refuse it, naming it in the failure.
    #[default]
    Refuse,
    /// Accept it (early NGC-era signatures, model_signing v0.2.0).
    Accept,
}

impl TrustPolicy {
    /// A policy with the given method and the defaults: unsigned files refused, signer ignore
    /// paths honoured, git paths ignored, legacy format refused.
    pub fn new(method: TrustMethod) -> Self {
        TrustPolicy {
            method,
            unsigned_files: UnsignedFiles::default(),
            signer_ignore_paths: SignerIgnorePaths::default(),
            extra_ignore_paths: DEFAULT_IGNORE_PATHS.iter().map(|s| s.to_string()).collect(),
            legacy: LegacyFormat::default(),
        }
    }

    /// Key method with one PEM public key.
    pub fn key_pem(pem: &[u8]) -> Result<Self, VerifyError> {
        Ok(Self::new(TrustMethod::Key {
            keys: vec![PublicKey::from_pem(pem)?],
        }))
    }

    /// Certificate method with the anchors in a PEM bundle, default rule and time.
    pub fn certificate_pem(pem: &[u8]) -> Result<Self, VerifyError> {
        Ok(Self::new(TrustMethod::Certificate {
            anchors: TrustAnchor::from_pem_bundle(pem)?,
            rule: AnchorRule::default(),
            time: CertificateTime::default(),
        }))
    }
}

/// Verifies a model signature (`model.sig` bytes) over `files` under `policy`, judging expiry
/// at `now`.
///
/// `files` is the model as it will be served: a directory walk ([`ModelFiles::from_dir`]), a
/// single file ([`ModelFiles::from_file`]) or the mirror's list of quarantined files. Leave
/// the signature file itself out (older signers did not record it in `ignore_paths`). Only
/// the report's `covered` files may be served; `ignored` and `unsigned` ones never.
///
/// ```no_run
/// # fn main() -> Result<(), verifier::VerifyError> {
/// use verifier::{verify_model_signature, ModelFiles, TrustPolicy};
/// // A quarantined snapshot: model-relative names, content-addressed blobs.
/// let mut files = ModelFiles::new();
/// files.add("config.json", "quarantine/3f/3f2a...".into())?;
/// files.add("model.safetensors", "quarantine/9c/9c01...".into())?;
/// let policy = TrustPolicy::key_pem(&std::fs::read("publisher.pub.pem")?)?;
/// let signature = std::fs::read("quarantine/model.sig")?;
/// let report = verify_model_signature(&files, &signature, &policy, std::time::SystemTime::now())?;
/// if let Some(reason) = report.failure() {
///     eprintln!("refused: {reason}");
/// }
/// # Ok(())
/// # }
/// ```
pub fn verify_model_signature(
    files: &ModelFiles,
    signature: &[u8],
    policy: &TrustPolicy,
    now: SystemTime,
) -> Result<SignatureReport, VerifyError> {
    let now_secs = unix_secs(now);
    let signed = match check_signature(signature, policy, now_secs)? {
        Ok(signed) => signed,
        Err(failure) => return Ok(SignatureReport::failed(failure)),
    };
    let manifest = match read_statement(&signed.payload, signed.legacy_pae, policy.legacy, files) {
        Ok(manifest) => manifest,
        Err(failure) => return Ok(SignatureReport::failed(failure)),
    };
    check_files(files, &manifest, policy, signed.signer)
}

pub(crate) fn unix_secs(time: SystemTime) -> u64 {
    // A time before 1970 is not a real "now"; treating it as 0 only makes expiry checks stricter.
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A signature that verified, and what it covers.
struct Signed {
    signer: Signer,
    payload: Vec<u8>,
    /// The signature verified only over the legacy v0.2 PAE.
    legacy_pae: bool,
}

fn malformed(what: &'static str, detail: impl ToString) -> Failure {
    Failure::Malformed {
        what,
        detail: detail.to_string(),
    }
}

fn check_signature(
    signature: &[u8],
    policy: &TrustPolicy,
    now: u64,
) -> Result<Result<Signed, Failure>, VerifyError> {
    if signature.len() > MAX_SIGNATURE_BYTES {
        return Ok(Err(malformed("bundle", "larger than 16 MiB")));
    }
    let bundle: Bundle = match serde_json::from_slice(signature) {
        Ok(b) => b,
        Err(e) => return Ok(Err(malformed("bundle", e))),
    };
    let local = match &policy.method {
        TrustMethod::Sigstore(sigstore) => {
            return keyless::verify_model_bundle(signature, &bundle, sigstore).map(|r| {
                r.map(|(signer, payload)| Signed {
                    signer,
                    payload,
                    legacy_pae: false,
                })
            })
        }
        TrustMethod::Key { keys } => Local::Key(keys),
        TrustMethod::Certificate {
            anchors,
            rule,
            time,
        } => Local::Certificate(anchors, *rule, *time),
    };
    // The key and certificate verifiers of model_signing accept only v0.3; so do we.
    if bundle.media_type != bundle::BUNDLE_V03 {
        return Ok(Err(Failure::Unsupported {
            what: "bundle mediaType",
            found: bundle.media_type,
        }));
    }
    let Some(envelope) = &bundle.dsse_envelope else {
        return Ok(Err(malformed("bundle", "no dsseEnvelope")));
    };
    if envelope.payload_type != bundle::IN_TOTO {
        return Ok(Err(Failure::Unsupported {
            what: "DSSE payloadType",
            found: envelope.payload_type.clone(),
        }));
    }
    let [env_sig] = envelope.signatures.as_slice() else {
        return Ok(Err(malformed(
            "envelope",
            format!(
                "{} signatures, expected exactly one",
                envelope.signatures.len()
            ),
        )));
    };
    let Some(payload) = bundle::decode_b64(&envelope.payload) else {
        return Ok(Err(malformed("envelope", "payload is not base64")));
    };
    let Some(sig) = bundle::decode_b64(&env_sig.sig) else {
        return Ok(Err(malformed("envelope", "signature is not base64")));
    };

    // Each key the signature may verify with, and who that makes the signer.
    let candidates: Vec<(PublicKey, Signer)> = match local {
        Local::Key(keys) => match select_keys(&bundle, keys) {
            Ok(keys) => keys
                .into_iter()
                .map(|k| {
                    let signer = Signer::Key {
                        curve: k.algorithm_name(),
                        spki_sha256: k.spki_sha256(),
                    };
                    (k, signer)
                })
                .collect(),
            Err(failure) => return Ok(Err(failure)),
        },
        Local::Certificate(anchors, rule, time) => {
            let material = &bundle.verification_material;
            let chain: Vec<&str> = match (&material.x509_certificate_chain, &material.certificate) {
                (Some(chain), None) => chain
                    .certificates
                    .iter()
                    .map(|c| c.raw_bytes.as_str())
                    .collect(),
                (None, Some(cert)) => vec![cert.raw_bytes.as_str()],
                _ => return Ok(Err(malformed(
                    "bundle",
                    "certificate method needs exactly one of x509CertificateChain or certificate",
                ))),
            };
            let mut ders = Vec::with_capacity(chain.len());
            for text in chain {
                match bundle::decode_b64(text) {
                    Some(der) => ders.push(der),
                    None => return Ok(Err(malformed("bundle", "certificate is not base64"))),
                }
            }
            match cert::verify_chain(&ders, anchors, rule, time, now) {
                Ok(ok) => vec![(
                    ok.leaf_key,
                    Signer::Certificate {
                        subject: ok.leaf_subject,
                        anchor: ok.anchor_subject,
                    },
                )],
                Err(failure) => return Ok(Err(failure)),
            }
        }
    };

    let pae = dsse::pae(&envelope.payload_type, &payload);
    for (key, signer) in &candidates {
        if key.is_ecdsa() && key.verify(key.curve_hash(), &pae, &sig) {
            return Ok(Ok(Signed {
                signer: signer.clone(),
                payload,
                legacy_pae: false,
            }));
        }
    }
    // Only after the correct PAE failed: the v0.2 signer's PAE, hashed with SHA-256 always.
    let legacy = dsse::legacy_pae(&envelope.payload_type, &payload);
    for (key, signer) in &candidates {
        if key.is_ecdsa() && key.verify(Hash::Sha256, &legacy, &sig) {
            if policy.legacy == LegacyFormat::Refuse {
                return Ok(Err(Failure::LegacyRefused {
                    found: "v0.2 PAE (DSSEV1 with a Python bytes repr)".to_string(),
                }));
            }
            return Ok(Ok(Signed {
                signer: signer.clone(),
                payload,
                legacy_pae: true,
            }));
        }
    }
    Ok(Err(Failure::BadSignature))
}

/// The two methods verified here (Sigstore goes to its own verifier).
enum Local<'a> {
    Key(&'a [PublicKey]),
    Certificate(&'a [TrustAnchor], AnchorRule, CertificateTime),
}

/// The configured keys the bundle may have been signed with: all of them, narrowed by the
/// bundle's `hint` or `rawBytes` when present (a present one that names no configured key is a
/// failure, like model_signing's hint check).
fn select_keys(bundle: &Bundle, keys: &[PublicKey]) -> Result<Vec<PublicKey>, Failure> {
    let Some(named) = &bundle.verification_material.public_key else {
        return Ok(keys.to_vec());
    };
    let trusted: Vec<String> = keys.iter().map(PublicKey::model_signing_hint).collect();
    if let Some(hint) = &named.hint {
        let hint = hint.to_ascii_lowercase();
        let chosen: Vec<PublicKey> = keys
            .iter()
            .filter(|k| k.model_signing_hint() == hint)
            .cloned()
            .collect();
        if chosen.is_empty() {
            return Err(Failure::KeyHintMismatch { hint, trusted });
        }
        return Ok(chosen);
    }
    if let Some(raw) = &named.raw_bytes {
        let Some(bytes) = bundle::decode_b64(raw) else {
            return Err(malformed("bundle", "publicKey.rawBytes is not base64"));
        };
        // model_signing wrote the PEM text here; the protobuf spec says DER. Accept both.
        let named_key = if bytes.starts_with(b"-----BEGIN") {
            PublicKey::from_pem(&bytes).map_err(|e| malformed("bundle", e))?
        } else {
            PublicKey::from_spki_der(&bytes).map_err(|e| malformed("bundle", e))?
        };
        let chosen: Vec<PublicKey> = keys
            .iter()
            .filter(|k| k.spki_der() == named_key.spki_der())
            .cloned()
            .collect();
        if chosen.is_empty() {
            return Err(Failure::KeyHintMismatch {
                hint: named_key.model_signing_hint(),
                trusted,
            });
        }
        return Ok(chosen);
    }
    Ok(keys.to_vec())
}

// ---------------------------------------------------------------------------------------------
// Statement

#[derive(Deserialize)]
struct Statement<P> {
    #[serde(rename = "_type")]
    statement_type: String,
    subject: Vec<Subject>,
    #[serde(rename = "predicateType")]
    predicate_type: String,
    #[serde(default = "Option::default")]
    predicate: Option<P>,
}

#[derive(Deserialize)]
struct Subject {
    #[serde(default)]
    name: Option<String>,
    digest: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct PredicateV1 {
    serialization: Serialization,
    resources: Vec<Resource>,
}

#[derive(Deserialize)]
struct Serialization {
    method: String,
    hash_type: String,
    #[serde(default)]
    shard_size: Option<serde_json::Number>,
    #[serde(default)]
    ignore_paths: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Resource {
    name: String,
    algorithm: String,
    digest: String,
}

/// A digest algorithm model_signing uses for files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileHash {
    Sha256,
    Blake2b,
    Blake3,
}

impl FileHash {
    fn parse(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(FileHash::Sha256),
            "blake2b" => Some(FileHash::Blake2b),
            "blake3" => Some(FileHash::Blake3),
            _ => None,
        }
    }
    fn len(self) -> usize {
        match self {
            FileHash::Sha256 | FileHash::Blake3 => 32,
            FileHash::Blake2b => 64,
        }
    }
}

/// What the statement says the model consists of, after every name has been checked.
struct Manifest {
    hash: FileHash,
    /// The algorithm string as signed (`sha256`, `sha256-sharded-64`, ...).
    algorithm: String,
    /// Shard serialization (resources are byte ranges).
    sharded: bool,
    /// Per file: whole-file digest, or shards by start offset.
    files: BTreeMap<String, SignedDigests>,
    /// Paths the signer recorded as ignored.
    signer_ignores: Vec<String>,
}

/// What the statement signs for one file.
enum SignedDigests {
    /// One digest over the whole file.
    Whole(Vec<u8>),
    /// Digests of byte ranges: start → (end, digest).
    Shards(BTreeMap<u64, (u64, Vec<u8>)>),
}

fn statement_error(detail: impl ToString) -> Failure {
    Failure::Statement {
        detail: detail.to_string(),
    }
}

fn read_statement(
    payload: &[u8],
    legacy_pae: bool,
    legacy: LegacyFormat,
    files: &ModelFiles,
) -> Result<Manifest, Failure> {
    // Parse the header with the predicate skipped, then the same bytes again with the
    // predicate's concrete shape: no intermediate `Value` in which a duplicated key could be
    // silently resolved differently from the signer.
    let head: Statement<serde::de::IgnoredAny> =
        serde_json::from_slice(payload).map_err(|e| malformed("statement", e))?;
    if head.statement_type != STATEMENT_V1 {
        return Err(statement_error(format!(
            "_type is {:?}, expected {STATEMENT_V1}",
            head.statement_type
        )));
    }
    match head.predicate_type.as_str() {
        PREDICATE_V1 if !legacy_pae => read_v1(payload, files),
        PREDICATE_LEGACY => match legacy {
            LegacyFormat::Refuse => Err(Failure::LegacyRefused {
                found: PREDICATE_LEGACY.to_string(),
            }),
            LegacyFormat::Accept => read_legacy(payload, files),
        },
        PREDICATE_V1 => Err(statement_error(
            "a v1.0 statement signed with the legacy PAE: no signer produced this",
        )),
        other => Err(statement_error(format!(
            "predicateType {other:?} is not model signing"
        ))),
    }
}

fn read_v1(payload: &[u8], files: &ModelFiles) -> Result<Manifest, Failure> {
    let statement: Statement<PredicateV1> =
        serde_json::from_slice(payload).map_err(|e| malformed("statement", e))?;
    let [subject] = statement.subject.as_slice() else {
        return Err(statement_error(format!(
            "{} subjects, v1.0 requires exactly one",
            statement.subject.len()
        )));
    };
    let expected_root = subject
        .digest
        .get("sha256")
        .and_then(|h| hex::decode(h).ok())
        .filter(|d| d.len() == 32)
        .ok_or_else(|| statement_error("subject has no sha256 digest"))?;
    let Some(predicate) = statement.predicate else {
        return Err(statement_error("no predicate"));
    };
    let ser = &predicate.serialization;
    let hash = FileHash::parse(&ser.hash_type)
        .ok_or_else(|| statement_error(format!("hash_type {:?} unsupported", ser.hash_type)))?;
    let sharded = match ser.method.as_str() {
        "files" => None,
        "shards" => Some(shard_size(ser.shard_size.as_ref())?),
        other => {
            return Err(statement_error(format!(
                "serialization method {other:?} unsupported"
            )))
        }
    };
    let algorithm = match sharded {
        None => ser.hash_type.clone(),
        Some(size) => format!("{}-sharded-{size}", ser.hash_type),
    };
    if predicate.resources.len() > MAX_RESOURCES {
        return Err(statement_error("too many resources"));
    }

    let mut root = sha2::Sha256::new();
    let mut manifest = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for resource in &predicate.resources {
        if resource.algorithm != algorithm {
            return Err(statement_error(format!(
                "resource {:?} uses {:?}, serialization says {algorithm:?}",
                resource.name, resource.algorithm
            )));
        }
        let digest = hex::decode(&resource.digest)
            .ok()
            .filter(|d| d.len() == hash.len())
            .ok_or_else(|| statement_error(format!("resource {:?}: bad digest", resource.name)))?;
        // The root digest is over the raw digests in LISTED order (the signer sorts, the
        // verifier must not).
        root.update(&digest);
        if !seen.insert(resource.name.as_str()) {
            return Err(Failure::DuplicateResource {
                name: resource.name.clone(),
            });
        }
        match sharded {
            None => {
                check_resource_name(&resource.name, files)?;
                manifest.insert(resource.name.clone(), SignedDigests::Whole(digest));
            }
            Some(_) => {
                let (path, start, end) = parse_shard_name(&resource.name)?;
                check_resource_name(path, files)?;
                let entry = manifest
                    .entry(path.to_string())
                    .or_insert_with(|| SignedDigests::Shards(BTreeMap::new()));
                if let SignedDigests::Shards(shards) = entry {
                    if shards.insert(start, (end, digest)).is_some() {
                        return Err(Failure::DuplicateResource {
                            name: resource.name.clone(),
                        });
                    }
                }
            }
        }
    }
    let computed = root.finalize();
    if computed.as_slice() != expected_root.as_slice() {
        return Err(Failure::RootDigestMismatch {
            expected: hex::encode(&expected_root),
            computed: hex::encode(computed),
        });
    }
    Ok(Manifest {
        hash,
        algorithm,
        sharded: sharded.is_some(),
        files: manifest,
        signer_ignores: ser.ignore_paths.clone().unwrap_or_default(),
    })
}

fn read_legacy(payload: &[u8], files: &ModelFiles) -> Result<Manifest, Failure> {
    let statement: Statement<serde::de::IgnoredAny> =
        serde_json::from_slice(payload).map_err(|e| malformed("statement", e))?;
    if statement.subject.len() > MAX_RESOURCES {
        return Err(statement_error("too many subjects"));
    }
    let mut manifest = BTreeMap::new();
    for subject in &statement.subject {
        let name = subject
            .name
            .clone()
            .ok_or_else(|| statement_error("legacy subject without a name"))?;
        check_resource_name(&name, files)?;
        let digest = subject
            .digest
            .get("sha256")
            .and_then(|h| hex::decode(h).ok())
            .filter(|d| d.len() == 32)
            .ok_or_else(|| statement_error(format!("subject {name:?}: no sha256 digest")))?;
        if manifest
            .insert(name.clone(), SignedDigests::Whole(digest))
            .is_some()
        {
            return Err(Failure::DuplicateResource { name });
        }
    }
    Ok(Manifest {
        hash: FileHash::Sha256,
        algorithm: "sha256".to_string(),
        sharded: false,
        files: manifest,
        signer_ignores: Vec::new(),
    })
}

fn shard_size(number: Option<&serde_json::Number>) -> Result<u64, Failure> {
    // protobuf's MessageToJson writes Struct numbers as floats ("shard_size": 64.0).
    let size = number.and_then(|n| {
        n.as_u64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 1.0 && *f <= 9.0e15)
                .map(|f| f as u64)
        })
    });
    match size {
        Some(s) if s > 0 => Ok(s),
        _ => Err(statement_error(
            "shards without a positive integral shard_size",
        )),
    }
}

/// `path:start:end` (end exclusive). Split from the right: the path itself may contain ':'.
fn parse_shard_name(name: &str) -> Result<(&str, u64, u64), Failure> {
    let bad = || statement_error(format!("shard name {name:?} is not path:start:end"));
    let mut parts = name.rsplitn(3, ':');
    let end = parts
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(bad)?;
    let start = parts
        .next()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(bad)?;
    let path = parts.next().ok_or_else(bad)?;
    if start >= end {
        return Err(bad());
    }
    Ok((path, start, end))
}

fn check_resource_name(name: &str, files: &ModelFiles) -> Result<(), Failure> {
    // "." names the model itself and is only meaningful for a single-file model.
    let ok = if name == "." {
        files.is_single_file()
    } else {
        files::unsafe_name(name).is_none()
    };
    if ok {
        Ok(())
    } else {
        Err(Failure::UnsafeResourceName {
            name: name.to_string(),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// File set

fn ignored_by(name: &str, ignores: &[String]) -> bool {
    ignores.iter().any(|p| {
        let p = p.trim_end_matches('/');
        !p.is_empty() && (name == p || name.strip_prefix(p).is_some_and(|r| r.starts_with('/')))
    })
}

fn check_files(
    files: &ModelFiles,
    manifest: &Manifest,
    policy: &TrustPolicy,
    signer: Signer,
) -> Result<SignatureReport, VerifyError> {
    let mut ignores = policy.extra_ignore_paths.clone();
    if policy.signer_ignore_paths == SignerIgnorePaths::Honour {
        ignores.extend(manifest.signer_ignores.iter().cloned());
    }
    let mut ignored = Vec::new();
    let mut unsigned = Vec::new();
    let mut to_hash = Vec::new();
    for (name, entry) in files.iter() {
        // Symlinks and special files fail even when ignored: model_signing refuses them by
        // default, and nothing legitimate in a model needs one.
        let Entry::File { path, sha256 } = entry else {
            return Ok(SignatureReport::failed(Failure::NotRegularFile {
                path: name.to_string(),
            }));
        };
        if let Some(signed) = manifest.files.get(name) {
            to_hash.push((name, path, *sha256, signed));
        } else if name != "." && ignored_by(name, &ignores) {
            ignored.push(name.to_string());
        } else if manifest.sharded {
            // Shard serialization cannot express an empty file (it has zero shards), so an
            // empty file that is not listed is covered by construction; anything else is not.
            let len = std::fs::metadata(path)
                .map_err(|source| VerifyError::ReadPath {
                    path: path.clone(),
                    source,
                })?
                .len();
            if len == 0 {
                to_hash.push((name, path, *sha256, &EMPTY_SHARDS));
            } else if policy.unsigned_files == UnsignedFiles::Exclude {
                unsigned.push(name.to_string());
            } else {
                return Ok(SignatureReport::failed(Failure::UnsignedFile {
                    path: name.to_string(),
                }));
            }
        } else if policy.unsigned_files == UnsignedFiles::Exclude {
            unsigned.push(name.to_string());
        } else {
            return Ok(SignatureReport::failed(Failure::UnsignedFile {
                path: name.to_string(),
            }));
        }
    }
    for name in manifest.files.keys() {
        if files.get(name).is_none() {
            return Ok(SignatureReport::failed(Failure::MissingFile {
                path: name.clone(),
            }));
        }
    }
    let mut covered = Vec::with_capacity(to_hash.len());
    for (name, path, known_sha256, signed) in to_hash {
        match check_file(name, path, known_sha256, signed, manifest)? {
            Ok(file) => covered.push(file),
            Err(failure) => return Ok(SignatureReport::failed(failure)),
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

static EMPTY_SHARDS: SignedDigests = SignedDigests::Shards(BTreeMap::new());

fn check_file(
    name: &str,
    path: &std::path::Path,
    known_sha256: Option<crate::Digest>,
    signed: &SignedDigests,
    manifest: &Manifest,
) -> Result<Result<CoveredFile, Failure>, VerifyError> {
    let read_err = |source| VerifyError::ReadPath {
        path: path.to_path_buf(),
        source,
    };
    let mismatch = || Failure::DigestMismatch {
        path: name.to_string(),
        algorithm: manifest.algorithm.clone(),
    };
    match signed {
        SignedDigests::Whole(expected) => {
            let actual = match (manifest.hash, known_sha256) {
                (FileHash::Sha256, Some(d)) => d.as_bytes().to_vec(),
                _ => {
                    let mut file = std::fs::File::open(path).map_err(read_err)?;
                    hash_reader(manifest.hash, &mut file).map_err(read_err)?
                }
            };
            if &actual != expected {
                return Ok(Err(mismatch()));
            }
            Ok(Ok(CoveredFile {
                path: name.to_string(),
                digests: vec![FileDigest {
                    algorithm: manifest.algorithm.clone(),
                    range: None,
                    hex: hex::encode(actual),
                }],
            }))
        }
        SignedDigests::Shards(shards) => {
            let mut file = std::fs::File::open(path).map_err(read_err)?;
            let len = file.metadata().map_err(read_err)?.len();
            // The shards must tile [0, len) exactly: a gap would leave bytes unsigned.
            let mut next = 0u64;
            for (&start, (end, _)) in shards {
                if start != next {
                    return Ok(Err(Failure::ShardCoverage {
                        path: name.to_string(),
                        detail: format!("expected a shard at {next}, found one at {start}"),
                    }));
                }
                next = *end;
            }
            if next != len {
                return Ok(Err(Failure::ShardCoverage {
                    path: name.to_string(),
                    detail: format!("shards end at {next}, file has {len} bytes"),
                }));
            }
            let mut digests = Vec::with_capacity(shards.len());
            for (&start, (end, expected)) in shards {
                file.seek(SeekFrom::Start(start)).map_err(read_err)?;
                let mut range = (&mut file).take(end - start);
                let actual = hash_reader(manifest.hash, &mut range).map_err(read_err)?;
                if &actual != expected {
                    return Ok(Err(mismatch()));
                }
                digests.push(FileDigest {
                    algorithm: manifest.algorithm.clone(),
                    range: Some((start, *end)),
                    hex: hex::encode(actual),
                });
            }
            Ok(Ok(CoveredFile {
                path: name.to_string(),
                digests,
            }))
        }
    }
}

fn hash_reader(hash: FileHash, reader: &mut impl Read) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 1 << 20];
    match hash {
        FileHash::Sha256 => {
            let mut h = sha2::Sha256::new();
            pump(reader, &mut buf, |b| h.update(b))?;
            Ok(h.finalize().to_vec())
        }
        FileHash::Blake2b => {
            let mut h = blake2::Blake2b512::new();
            pump(reader, &mut buf, |b| blake2::Digest::update(&mut h, b))?;
            Ok(blake2::Digest::finalize(h).to_vec())
        }
        FileHash::Blake3 => {
            let mut h = blake3::Hasher::new();
            pump(reader, &mut buf, |b| {
                h.update(b);
            })?;
            Ok(h.finalize().as_bytes().to_vec())
        }
    }
}

fn pump(
    reader: &mut impl Read,
    buf: &mut [u8],
    mut sink: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    loop {
        let n = match reader.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sink(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_names_split_from_the_right() {
        assert_eq!(
            parse_shard_name("a:b.bin:0:64").ok(),
            Some(("a:b.bin", 0, 64))
        );
        assert!(parse_shard_name("x:64:0").is_err());
        assert!(parse_shard_name("x:0").is_err());
        assert!(parse_shard_name("x:-1:5").is_err());
    }

    #[test]
    fn float_shard_size_is_accepted_when_integral() {
        let n: serde_json::Number = serde_json::from_str("64.0").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(shard_size(Some(&n)).ok(), Some(64));
        let n: serde_json::Number = serde_json::from_str("64.5").unwrap_or_else(|e| panic!("{e}"));
        assert!(shard_size(Some(&n)).is_err());
        assert!(shard_size(None).is_err());
    }

    #[test]
    fn ignore_matches_prefix_components_only() {
        let ignores = vec![".git".to_string()];
        assert!(ignored_by(".git/config", &ignores));
        assert!(ignored_by(".git", &ignores));
        assert!(!ignored_by(".github/x", &ignores));
        assert!(!ignored_by("a/.git/config", &ignores));
    }

    #[test]
    fn empty_input_hashes_are_known_values() {
        let sha = hash_reader(FileHash::Sha256, &mut &b""[..]).unwrap_or_default();
        assert_eq!(
            hex::encode(sha),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let b3 = hash_reader(FileHash::Blake3, &mut &b""[..]).unwrap_or_default();
        assert_eq!(
            hex::encode(b3),
            "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
        );
    }
}
