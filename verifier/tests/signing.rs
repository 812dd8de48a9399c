//! Every signing vector under `tests/fixtures/signing/` (copied from `shared/fixtures/signing/`):
//! the model_signing `ms/` rows, the 70 sigstore-conformance bundle cases, the sigstore-python
//! and sigstore-rs bundles, and the OpenPGP cases. No test touches the network.
//!
//! Each family test prints a table (vector, expected, got) and fails listing every mismatch,
//! so one run shows the whole picture.

use base64::Engine as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use verifier::{
    verify_model_signature, verify_pgp_detached, verify_pgp_manifest, verify_sigstore_bundle,
    AnchorRule, CertificateTime, ExpiredKeys, Failure, LegacyFormat, ModelFiles, Outcome,
    PgpKeyring, PgpOptions, PublicKey, RevokedKeys, SignatureReport, SignerIgnorePaths,
    SigstoreArtifact, SigstorePolicy, SigstoreSigner, TrustMethod, TrustPolicy, UnsignedFiles,
    VerifyError,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/signing")
}

fn read(rel: &str) -> Vec<u8> {
    let path = fixtures().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// 2027-01-01T00:00:00Z: after the test PKI was issued (2026-11-21), before its leaves expire
/// (2029), after the `expired.pub.asc` key expired.
fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_761_600)
}

/// A scratch copy of a vector's model directory, removed on drop.
struct Stage {
    dir: PathBuf,
}

impl Stage {
    fn new(rel: &str) -> Stage {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "airlock-sig-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        copy_dir(&fixtures().join(rel), &dir);
        Stage { dir }
    }
    fn write(&self, rel: &str, bytes: &[u8]) {
        let path = self.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("{e}"));
        }
        std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{e}"));
    }
    fn files_without_sig(&self) -> ModelFiles {
        let mut files = ModelFiles::from_dir(&self.dir).unwrap_or_else(|e| panic!("{e}"));
        // The CLI drops the signature file when it sits in the model directory; so do we.
        files.remove("model.sig");
        files
    }
}

impl Drop for Stage {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{e}"));
    for entry in std::fs::read_dir(from).unwrap_or_else(|e| panic!("{e}")) {
        let entry = entry.unwrap_or_else(|e| panic!("{e}"));
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap_or_else(|e| panic!("{e}"));
            let mut perms = std::fs::metadata(&target)
                .unwrap_or_else(|e| panic!("{e}"))
                .permissions();
            #[allow(clippy::permissions_set_readonly_false)]
            perms.set_readonly(false);
            std::fs::set_permissions(&target, perms).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

fn key_policy(rel: &str) -> TrustPolicy {
    TrustPolicy::key_pem(&read(rel)).unwrap_or_else(|e| panic!("{e}"))
}

fn cert_policy(rel: &str) -> TrustPolicy {
    TrustPolicy::certificate_pem(&read(rel)).unwrap_or_else(|e| panic!("{e}"))
}

fn set_cert(policy: &mut TrustPolicy, new_rule: AnchorRule, new_time: CertificateTime) {
    if let TrustMethod::Certificate { rule, time, .. } = &mut policy.method {
        *rule = new_rule;
        *time = new_time;
    }
}

fn short(report: &Result<SignatureReport, VerifyError>) -> String {
    match report {
        Ok(r) => match &r.outcome {
            Outcome::Verified {
                covered, unsigned, ..
            } => format!(
                "pass ({} covered, {} unsigned)",
                covered.len(),
                unsigned.len()
            ),
            Outcome::Failed { reason } => format!("fail: {reason}"),
        },
        Err(e) => format!("error: {e}"),
    }
}

fn passed(report: &Result<SignatureReport, VerifyError>) -> bool {
    matches!(report, Ok(r) if r.is_verified())
}

/// Runs one `ms/` vector with `policy`, after `prepare` has adjusted the staged copy.
fn run_ms(
    vector: &str,
    policy: &TrustPolicy,
    prepare: impl FnOnce(&Stage),
) -> Result<SignatureReport, VerifyError> {
    let stage = Stage::new(&format!("ms/{vector}/model"));
    prepare(&stage);
    let sig = std::fs::read(stage.dir.join("model.sig")).unwrap_or_else(|e| panic!("{e}"));
    verify_model_signature(&stage.files_without_sig(), &sig, policy, now())
}

/// The git files the shared fixtures lost (a work tree cannot hold `.git/`; see the README).
fn restore_git_files(vector: &str, stage: &Stage) {
    if vector == "key_p256_nested" {
        stage.write(
            ".gitattributes",
            b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n",
        );
        stage.write(".git/HEAD", b"ref: refs/heads/main\n");
    }
    if vector == "edge_extra_in_git_dir" {
        stage.write(".git/config", b"[core]\n\trepositoryformatversion = 0\n");
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Expect {
    Pass,
    Fail,
}

#[test]
fn model_signing_vectors_reach_the_mirror_outcome() {
    use Expect::*;
    // (row as in ms/README's table, expected "mirror" outcome, policy)
    let p256 = "keys/signer_p256.pub.pem";
    let mut rows: Vec<(String, Expect, TrustPolicy)> = Vec::new();
    let mut add = |row: &str, expect: Expect, policy: TrustPolicy| {
        rows.push((row.to_string(), expect, policy));
    };
    add("key_p256", Pass, key_policy(p256));
    add("key_p256_nested", Pass, key_policy(p256));
    add("key_p384", Pass, key_policy("keys/signer_p384.pub.pem"));
    add("cert_chain", Pass, cert_policy("pki/root.crt.pem"));
    // policy row: default CertificateTime::Now refuses the expired leaf ...
    add(
        "cert_expired_leaf",
        Fail,
        cert_policy("pki/old_root.crt.pem"),
    );
    // ... CertificateTime::LeafNotBefore (model_signing's behaviour) accepts it.
    let mut at_issue = cert_policy("pki/old_root.crt.pem");
    set_cert(
        &mut at_issue,
        AnchorRule::SelfSignedRoots,
        CertificateTime::LeafNotBefore,
    );
    add("cert_expired_leaf@leaf_not_before", Pass, at_issue);
    add("cert_nousage", Fail, cert_policy("pki/root.crt.pem"));
    add(
        "cert_chain@other_root",
        Fail,
        cert_policy("pki/other_root.crt.pem"),
    );
    // policy row: default AnchorRule::SelfSignedRoots (OpenSSL without PARTIAL_CHAIN) ...
    add(
        "cert_chain@intermediate_only_trust",
        Fail,
        cert_policy("pki/intermediate.crt.pem"),
    );
    // ... AnchorRule::AnyConfigured trusts the configured intermediate.
    let mut partial = cert_policy("pki/intermediate.crt.pem");
    set_cert(
        &mut partial,
        AnchorRule::AnyConfigured,
        CertificateTime::Now,
    );
    add("cert_chain@intermediate_any_configured", Pass, partial);
    add("api_shards64", Pass, key_policy(p256));
    add("api_blake2", Pass, key_policy(p256));
    add("api_blake3", Pass, key_policy(p256));
    add("neg_tampered_file", Fail, key_policy(p256));
    add("neg_extra_file", Fail, key_policy(p256));
    // policy row: UnsignedFiles::Exclude verifies and lists extra.txt as unsigned (never served).
    let mut exclude = key_policy(p256);
    exclude.unsigned_files = UnsignedFiles::Exclude;
    add("neg_extra_file@ignore_unsigned", Pass, exclude.clone());
    add("neg_missing_file", Fail, key_policy(p256));
    add("neg_renamed_file", Fail, key_policy(p256));
    add("edge_extra_in_git_dir", Pass, key_policy(p256));
    // policy row: no verifier-side git ignores; the signer's recorded ignore_paths still apply
    // under SignerIgnorePaths::Honour (default) ...
    let mut no_git = key_policy(p256);
    no_git.extra_ignore_paths.clear();
    add("edge_extra_in_git_dir@no_ignore_git", Pass, no_git.clone());
    // ... and SignerIgnorePaths::Disregard makes the unsigned .git/config fail.
    let mut disregard = no_git;
    disregard.signer_ignore_paths = SignerIgnorePaths::Disregard;
    add(
        "edge_extra_in_git_dir@disregard_signer_ignores",
        Fail,
        disregard,
    );
    add("neg_wrong_key", Fail, key_policy("keys/wrong_p256.pub.pem"));
    add("neg_wrong_key_nohint", Fail, key_policy(p256));
    add("neg_tampered_sig", Fail, key_policy(p256));
    add("neg_tampered_payload", Fail, key_policy(p256));
    add("crafted_root_digest_mismatch", Fail, key_policy(p256));
    add("crafted_wrong_payload_type", Fail, key_policy(p256));
    add("crafted_wrong_predicate_type", Fail, key_policy(p256));
    add("crafted_wrong_statement_type", Fail, key_policy(p256));
    add("crafted_two_subjects", Fail, key_policy(p256));
    add("crafted_media_type_v02", Fail, key_policy(p256));
    add("crafted_path_traversal", Fail, key_policy(p256));
    add(
        "crafted_path_traversal@ignore_unsigned",
        Fail,
        exclude.clone(),
    );
    add("crafted_path_traversal_real", Fail, key_policy(p256));
    add("crafted_path_traversal_real@ignore_unsigned", Fail, exclude);
    add("crafted_duplicate_resource", Fail, key_policy(p256));
    add("crafted_unknown_serialization", Fail, key_policy(p256));
    add("crafted_resources_unsorted", Pass, key_policy(p256));
    add("crafted_extra_predicate_field", Pass, key_policy(p256));
    // policy row: LegacyFormat::Refuse (default) names the legacy format ...
    add("crafted_legacy_v02", Fail, key_policy(p256));
    // ... LegacyFormat::Accept verifies the buggy v0.2 PAE and per-file subjects.
    let mut legacy = key_policy(p256);
    legacy.legacy = LegacyFormat::Accept;
    add("crafted_legacy_v02@accept_legacy", Pass, legacy);

    let mut mismatches = Vec::new();
    println!("{:<50} {:<6} got", "ms/ vector", "expect");
    for (row, expect, policy) in &rows {
        let vector = row.split('@').next().unwrap_or(row);
        let report = run_ms(vector, policy, |stage| restore_git_files(vector, stage));
        let got = if passed(&report) {
            Expect::Pass
        } else {
            Expect::Fail
        };
        println!("{row:<50} {expect:<6?} {}", short(&report));
        if got != *expect || report.is_err() {
            mismatches.push(format!(
                "{row}: expected {expect:?}, got {}",
                short(&report)
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "mismatches:\n{}",
        mismatches.join("\n")
    );
}

/// The failures name the precise reason, not just "failed".
#[test]
fn model_signing_failures_name_the_reason() {
    let p256 = key_policy("keys/signer_p256.pub.pem");
    let reason = |vector: &str, policy: &TrustPolicy| -> Failure {
        let report = run_ms(vector, policy, |_| {}).unwrap_or_else(|e| panic!("{vector}: {e}"));
        report
            .failure()
            .cloned()
            .unwrap_or_else(|| panic!("{vector} verified"))
    };
    assert!(
        matches!(reason("neg_tampered_file", &p256), Failure::DigestMismatch { path, .. } if path == "model.safetensors")
    );
    assert!(
        matches!(reason("neg_extra_file", &p256), Failure::UnsignedFile { path } if path == "extra.txt")
    );
    assert!(
        matches!(reason("neg_missing_file", &p256), Failure::MissingFile { path } if path == "config.json")
    );
    assert!(matches!(
        reason("neg_wrong_key", &key_policy("keys/wrong_p256.pub.pem")),
        Failure::KeyHintMismatch { .. }
    ));
    assert!(matches!(
        reason("neg_wrong_key_nohint", &p256),
        Failure::BadSignature
    ));
    assert!(matches!(
        reason("crafted_root_digest_mismatch", &p256),
        Failure::RootDigestMismatch { .. }
    ));
    assert!(
        matches!(reason("crafted_path_traversal_real", &p256), Failure::UnsafeResourceName { name } if name == "../outside.txt")
    );
    assert!(
        matches!(reason("crafted_duplicate_resource", &p256), Failure::DuplicateResource { name } if name == "config.json")
    );
    assert!(matches!(
        reason("crafted_media_type_v02", &p256),
        Failure::Unsupported { .. }
    ));
    assert!(matches!(
        reason("crafted_legacy_v02", &p256),
        Failure::LegacyRefused { .. }
    ));
    assert!(matches!(
        reason("cert_nousage", &cert_policy("pki/root.crt.pem")),
        Failure::CertificateUsage { .. }
    ));
    assert!(matches!(
        reason("cert_expired_leaf", &cert_policy("pki/old_root.crt.pem")),
        Failure::CertificateExpired { .. }
    ));
}

#[test]
fn verified_report_lists_covered_ignored_and_unsigned() {
    let p256 = key_policy("keys/signer_p256.pub.pem");
    let report = run_ms("key_p256_nested", &p256, |s| {
        restore_git_files("key_p256_nested", s)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let Outcome::Verified {
        covered, ignored, ..
    } = &report.outcome
    else {
        panic!("{report:?}");
    };
    let names: Vec<&str> = covered.iter().map(|c| c.path.as_str()).collect();
    assert!(names.contains(&"a/b") && names.contains(&"a-b") && names.contains(&"empty.bin"));
    assert!(names.contains(&"tokenizer/tokenizer.json"));
    assert_eq!(
        ignored,
        &vec![".git/HEAD".to_string(), ".gitattributes".to_string()]
    );

    let mut exclude = p256;
    exclude.unsigned_files = UnsignedFiles::Exclude;
    let report = run_ms("neg_extra_file", &exclude, |_| {}).unwrap_or_else(|e| panic!("{e}"));
    let Outcome::Verified {
        covered, unsigned, ..
    } = &report.outcome
    else {
        panic!("{report:?}");
    };
    assert_eq!(unsigned, &vec!["extra.txt".to_string()]);
    assert!(covered.iter().all(|c| c.path != "extra.txt"));
}

#[test]
fn ed25519_keys_are_not_a_model_signing_key() {
    // model_signing cannot sign with ed25519 (ms/key_ed25519_unsupported); configuring such a
    // key is a configuration error, reported as such.
    let err = TrustPolicy::key_pem(&read("keys/signer_ed25519.pub.pem"));
    assert!(matches!(err, Err(VerifyError::TrustMaterial { .. })));
}

#[test]
fn symlink_in_model_fails() {
    let p256 = key_policy("keys/signer_p256.pub.pem");
    let report = run_ms("key_p256", &p256, |stage| {
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/hostname", stage.dir.join("link.txt"))
            .unwrap_or_else(|e| panic!("{e}"));
    })
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(report.failure(), Some(Failure::NotRegularFile { path }) if path == "link.txt")
    );
}

#[test]
fn content_addressed_file_list_verifies_like_the_directory() {
    // The mirror describes a quarantined snapshot as (name, blob path) pairs.
    let p256 = key_policy("keys/signer_p256.pub.pem");
    let model = fixtures().join("ms/key_p256/model");
    let mut files = ModelFiles::new();
    for name in ["config.json", "model.safetensors"] {
        files
            .add(name, model.join(name))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let sig = read("ms/key_p256/model/model.sig");
    let report =
        verify_model_signature(&files, &sig, &p256, now()).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_verified(), "{report:?}");

    // A known sha256 that disagrees is caught without re-reading the file.
    let mut lying = ModelFiles::new();
    lying
        .add("config.json", model.join("config.json"))
        .unwrap_or_else(|e| panic!("{e}"));
    lying
        .add_with_sha256(
            "model.safetensors",
            model.join("model.safetensors"),
            verifier::Digest::of(b"something else"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    let report =
        verify_model_signature(&lying, &sig, &p256, now()).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(
        report.failure(),
        Some(Failure::DigestMismatch { .. })
    ));
}

/// The older key-bundle shape: `publicKey.rawBytes` (base64 PEM) + `keyDetails`, `keyid: null`.
#[test]
fn raw_bytes_key_shape_and_null_keyid_are_accepted() {
    let sig = String::from_utf8(read("ms/key_p256/model/model.sig")).unwrap_or_default();
    let mut bundle: serde_json::Value =
        serde_json::from_str(&sig).unwrap_or_else(|e| panic!("{e}"));
    let pem = read("keys/signer_p256.pub.pem");
    bundle["verificationMaterial"]["publicKey"] = serde_json::json!({
        "rawBytes": base64::engine::general_purpose::STANDARD.encode(&pem),
        "keyDetails": "PKIX_ECDSA_P256_SHA_256",
    });
    bundle["dsseEnvelope"]["signatures"][0]["keyid"] = serde_json::Value::Null;
    // Re-serialising the BUNDLE is fine here: the signature covers the payload, which stays
    // the same base64 string.
    let old_shape = serde_json::to_vec(&bundle).unwrap_or_default();
    let files = ModelFiles::from_dir(&fixtures().join("ms/key_p256/model"))
        .map(|mut f| {
            f.remove("model.sig");
            f
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let ok = verify_model_signature(
        &files,
        &old_shape,
        &key_policy("keys/signer_p256.pub.pem"),
        now(),
    );
    assert!(passed(&ok), "{}", short(&ok));
    let wrong = verify_model_signature(
        &files,
        &old_shape,
        &key_policy("keys/wrong_p256.pub.pem"),
        now(),
    );
    assert!(matches!(
        wrong.as_ref().ok().and_then(|r| r.failure()),
        Some(Failure::KeyHintMismatch { .. })
    ));
}

// ---- Statements signed in the test, for shapes no shared vector has -------------------------

fn sign_statement(statement: &serde_json::Value) -> Vec<u8> {
    use p256::ecdsa::signature::Signer as _;
    use p256::pkcs8::DecodePrivateKey as _;
    let pem = String::from_utf8(read("keys/signer_p256.key.pem")).unwrap_or_default();
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(&pem).unwrap_or_else(|e| panic!("{e}"));
    let payload = serde_json::to_vec_pretty(statement).unwrap_or_default();
    let payload_type = "application/vnd.in-toto+json";
    let mut pae = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    pae.extend_from_slice(&payload);
    let sig: p256::ecdsa::Signature = key.sign(&pae);
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    serde_json::to_vec(&serde_json::json!({
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": b64(&payload),
            "payloadType": payload_type,
            "signatures": [{"sig": b64(sig.to_der().as_bytes()), "keyid": ""}],
        }
    }))
    .unwrap_or_default()
}

fn statement(resources: &[(&str, &[u8])]) -> serde_json::Value {
    use sha2::Digest as _;
    let mut root = sha2::Sha256::new();
    let mut list = Vec::new();
    for (name, content) in resources {
        let d = sha2::Sha256::digest(content);
        root.update(d);
        list.push(
            serde_json::json!({"name": name, "algorithm": "sha256", "digest": hex::encode(d)}),
        );
    }
    serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "m", "digest": {"sha256": hex::encode(root.finalize())}}],
        "predicateType": "https://model_signing/signature/v1.0",
        "predicate": {
            "serialization": {"method": "files", "hash_type": "sha256", "allow_symlinks": false},
            "resources": list,
        }
    })
}

#[test]
fn single_file_model_uses_the_dot_resource() {
    let p256 = key_policy("keys/signer_p256.pub.pem");
    let file = fixtures().join("models/sample_model/model.safetensors");
    let bytes = std::fs::read(&file).unwrap_or_default();
    let sig = sign_statement(&statement(&[(".", &bytes)]));
    let single = ModelFiles::from_file(&file).unwrap_or_else(|e| panic!("{e}"));
    let ok = verify_model_signature(&single, &sig, &p256, now());
    assert!(passed(&ok), "{}", short(&ok));
    // "." names the model itself: against a directory it is refused.
    let dir = ModelFiles::from_dir(&fixtures().join("models/sample_model"))
        .unwrap_or_else(|e| panic!("{e}"));
    let bad = verify_model_signature(&dir, &sig, &p256, now());
    assert!(matches!(
        bad.as_ref().ok().and_then(|r| r.failure()),
        Some(Failure::UnsafeResourceName { .. })
    ));
}

#[test]
fn escaping_resource_names_fail_even_when_signed() {
    let p256 = key_policy("keys/signer_p256.pub.pem");
    let dir = ModelFiles::from_dir(&fixtures().join("models/sample_model"))
        .unwrap_or_else(|e| panic!("{e}"));
    let config = read("models/sample_model/config.json");
    let model = read("models/sample_model/model.safetensors");
    for evil in [
        "/etc/passwd",
        "..\\outside.txt",
        "a/../../x",
        "./config.json",
        "a//b",
        "x\\..\\..\\y",
    ] {
        let sig = sign_statement(&statement(&[
            ("config.json", &config),
            ("model.safetensors", &model),
            (evil, b"x"),
        ]));
        let report =
            verify_model_signature(&dir, &sig, &p256, now()).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(report.failure(), Some(Failure::UnsafeResourceName { name }) if name == evil),
            "{evil}: {report:?}"
        );
    }
    // Control: the same statement without the evil name verifies.
    let sig = sign_statement(&statement(&[
        ("config.json", &config),
        ("model.safetensors", &model),
    ]));
    let ok = verify_model_signature(&dir, &sig, &p256, now());
    assert!(passed(&ok), "{}", short(&ok));
}

// ---- Sigstore ---------------------------------------------------------------------------------

const DEFAULT_IDENTITY: &str = "https://github.com/sigstore-conformance/extremely-dangerous-public-oidc-beacon/.github/workflows/extremely-dangerous-oidc-beacon.yml@refs/heads/main";
const DEFAULT_ISSUER: &str = "https://token.actions.githubusercontent.com";
const PROD_ROOT: &str =
    "external/sigstore-python/sigstore/_store/https%3A%2F%2Ftuf-repo-cdn.sigstore.dev/trusted_root.json";
const STAGING_ROOT: &str =
    "external/sigstore-python/sigstore/_store/https%3A%2F%2Ftuf-repo-cdn.sigstage.dev/trusted_root.json";

fn conformance_case(case: &Path) -> Result<SignatureReport, VerifyError> {
    let file = |name: &str| std::fs::read(case.join(name)).ok();
    let text = |name: &str| file(name).map(|b| String::from_utf8_lossy(&b).trim().to_string());
    let artifact = file("artifact")
        .or_else(|| {
            case.parent()
                .and_then(|p| std::fs::read(p.join("a.txt")).ok())
        })
        .unwrap_or_default();
    let root = file("trusted_root.json").unwrap_or_else(|| read(PROD_ROOT));
    let signer = match file("key.pub") {
        Some(pem) => SigstoreSigner::Key(PublicKey::from_pem(&pem)?),
        None => SigstoreSigner::Identity {
            identity: text("identity").unwrap_or_else(|| DEFAULT_IDENTITY.to_string()),
            issuer: text("issuer").unwrap_or_else(|| DEFAULT_ISSUER.to_string()),
        },
    };
    let policy = SigstorePolicy::new(&root, signer)?;
    let bundle = file("bundle.sigstore.json").unwrap_or_default();
    verify_sigstore_bundle(SigstoreArtifact::Bytes(&artifact), &bundle, &policy)
}

#[test]
fn sigstore_conformance_cases_pass_and_fail_as_named() {
    let base = fixtures().join("external/sigstore-conformance/test/assets/bundle-verify");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&base)
        .unwrap_or_else(|e| panic!("{e}"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert_eq!(cases.len(), 70, "expected the 70 conformance cases");
    let mut mismatches = Vec::new();
    for case in &cases {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let expect_pass = !name.ends_with("_fail");
        // A case that must fail may fail as an error too (unusable trust root or key): a CLI
        // would exit 2, still not "verified".
        let report = conformance_case(case);
        println!(
            "{name:<60} {:<5} {}",
            if expect_pass { "pass" } else { "fail" },
            short(&report)
        );
        if passed(&report) != expect_pass {
            mismatches.push(format!("{name}: {}", short(&report)));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of 70 wrong:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

/// Identity and issuer as the bundle's leaf states them (how the vectors are meant to be run).
/// A bundle that does not parse gets a placeholder (it must fail anyway).
fn leaf_identity(bundle: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(bundle);
    let info = sigstore_verify::types::Bundle::from_json(&text)
        .ok()
        .and_then(|b| {
            b.signing_certificate()
                .and_then(|c| sigstore_verify::crypto::parse_certificate_info(c).ok())
        });
    match info {
        Some(info) => (
            info.identity
                .map(|i| i.as_str().to_string())
                .unwrap_or_default(),
            info.issuer.unwrap_or_default(),
        ),
        None => (
            "unparseable@example.invalid".into(),
            "https://example.invalid".into(),
        ),
    }
}

#[test]
fn sigstore_python_bundles_as_upstream_expects() {
    let assets = "external/sigstore-python/test/assets";
    let tsa_root = format!("{assets}/tsa/trust_config.json");
    // (artifact, bundle, root, expected). Expectations from sigstore-python's own tests,
    // as listed in signatures.md 1.11.
    let cases: Vec<(&str, &str, &str, bool)> = vec![
        ("bundle.txt", "bundle.txt.sigstore", STAGING_ROOT, true),
        (
            "bundle_v3.txt",
            "bundle_v3.txt.sigstore",
            STAGING_ROOT,
            true,
        ),
        (
            "bundle_v3_alt.txt",
            "bundle_v3_alt.txt.sigstore",
            STAGING_ROOT,
            true,
        ),
        (
            "staging-rekor-v2.txt",
            "staging-rekor-v2.txt.sigstore.json",
            STAGING_ROOT,
            true,
        ),
        (
            "bundle_v3_github.whl",
            "bundle_v3_github.whl.sigstore",
            PROD_ROOT,
            true,
        ),
        (
            "bundle_cve_2022_36056.txt",
            "bundle_cve_2022_36056.txt.sigstore",
            STAGING_ROOT,
            false,
        ),
        (
            "bundle_invalid_version.txt",
            "bundle_invalid_version.txt.sigstore",
            STAGING_ROOT,
            false,
        ),
        (
            "bundle_no_checkpoint.txt",
            "bundle_no_checkpoint.txt.sigstore",
            STAGING_ROOT,
            false,
        ),
        (
            "bundle_no_log_entry.txt",
            "bundle_no_log_entry.txt.sigstore",
            STAGING_ROOT,
            false,
        ),
        (
            "bundle_v3_no_signed_time.txt",
            "bundle_v3_no_signed_time.txt.sigstore.json",
            STAGING_ROOT,
            false,
        ),
        (
            "tsa/bundle.txt",
            "tsa/bundle.duplicate.sigstore",
            &tsa_root,
            false,
        ),
        (
            "tsa/bundle.txt",
            "tsa/bundle.many_timestamp.sigstore",
            &tsa_root,
            false,
        ),
        (
            "tsa/bundle.txt",
            "tsa/bundle.txt.late_timestamp.sigstore",
            &tsa_root,
            false,
        ),
        // Known divergence (signatures.md 1.10): sigstore-python passes this one;
        // sigstore-verify 0.15.1 fails it ("CMS signer does not match any trusted TSA
        // certificate"). Pinned so a library upgrade that changes it is noticed.
        (
            "tsa/bundle.txt",
            "tsa/bundle.txt.sigstore",
            &tsa_root,
            false,
        ),
    ];
    let mut mismatches = Vec::new();
    for (artifact, bundle, root, expected) in cases {
        let bundle_bytes = read(&format!("{assets}/{bundle}"));
        let (identity, issuer) = leaf_identity(&bundle_bytes);
        let report =
            SigstorePolicy::new(&read(root), SigstoreSigner::Identity { identity, issuer })
                .and_then(|policy| {
                    verify_sigstore_bundle(
                        SigstoreArtifact::Bytes(&read(&format!("{assets}/{artifact}"))),
                        &bundle_bytes,
                        &policy,
                    )
                });
        println!(
            "{bundle:<50} {:<5} {}",
            if expected { "pass" } else { "fail" },
            short(&report)
        );
        if passed(&report) != expected {
            mismatches.push(format!("{bundle}: {}", short(&report)));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn sigstore_wrong_identity_names_both() {
    let assets = "external/sigstore-python/test/assets";
    let bundle = read(&format!("{assets}/bundle_v3.txt.sigstore"));
    let (identity, issuer) = leaf_identity(&bundle);
    let policy = SigstorePolicy::new(
        &read(STAGING_ROOT),
        SigstoreSigner::Identity {
            identity: "someone@example.com".into(),
            issuer: issuer.clone(),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let report = verify_sigstore_bundle(
        SigstoreArtifact::Bytes(&read(&format!("{assets}/bundle_v3.txt"))),
        &bundle,
        &policy,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    match report.failure() {
        Some(Failure::WrongSigner {
            found_identity,
            required_identity,
            ..
        }) => {
            assert_eq!(found_identity, &identity);
            assert_eq!(required_identity, "someone@example.com");
        }
        other => panic!("{other:?}"),
    }
    // And a production bundle against the staging root fails.
    let policy = SigstorePolicy::new(
        &read(STAGING_ROOT),
        SigstoreSigner::Identity { identity, issuer },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let prod = read(&format!("{assets}/bundle_v3_github.whl.sigstore"));
    let report = verify_sigstore_bundle(
        SigstoreArtifact::Bytes(&read(&format!("{assets}/bundle_v3_github.whl"))),
        &prod,
        &policy,
    );
    assert!(!passed(&report));
}

/// sigstore-rs's real v0.3 DSSE bundle: passes with sigstore-python's production root, fails
/// with sigstore-rs's older root (no timestampAuthorities, T10). Through the model-signing
/// entry point it gets past the Sigstore checks and is then refused for its predicate.
#[test]
fn sigstore_rs_dsse_bundle() {
    let bundle = read("external/sigstore-rs/tests/data/bundle_v03.json");
    let signer = || {
        SigstoreSigner::Identity {
        identity: "https://github.com/kubewarden/kubewarden-controller/.github/workflows/release.yml@refs/tags/v1.34.0".into(),
        issuer: "https://token.actions.githubusercontent.com".into(),
    }
    };
    let json: serde_json::Value = serde_json::from_slice(&bundle).unwrap_or_else(|e| panic!("{e}"));
    let payload = base64::engine::general_purpose::STANDARD
        .decode(json["dsseEnvelope"]["payload"].as_str().unwrap_or_default())
        .unwrap_or_default();
    let statement: serde_json::Value =
        serde_json::from_slice(&payload).unwrap_or_else(|e| panic!("{e}"));
    let subject: verifier::Digest = statement["subject"][0]["digest"]["sha256"]
        .as_str()
        .unwrap_or_default()
        .parse()
        .unwrap_or_else(|e| panic!("{e:?}"));

    let prod = SigstorePolicy::new(&read(PROD_ROOT), signer()).unwrap_or_else(|e| panic!("{e}"));
    let ok = verify_sigstore_bundle(SigstoreArtifact::Sha256(subject), &bundle, &prod);
    assert!(passed(&ok), "{}", short(&ok));

    let old = SigstorePolicy::new(
        &read("external/sigstore-rs/trust_root/prod/trusted_root.json"),
        signer(),
    )
    .and_then(|p| verify_sigstore_bundle(SigstoreArtifact::Sha256(subject), &bundle, &p));
    assert!(!passed(&old), "{}", short(&old));

    let files = ModelFiles::from_dir(&fixtures().join("models/sample_model"))
        .unwrap_or_else(|e| panic!("{e}"));
    let as_model = verify_model_signature(
        &files,
        &bundle,
        &TrustPolicy::new(TrustMethod::Sigstore(Box::new(prod))),
        now(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(as_model.failure(), Some(Failure::Statement { detail }) if detail.contains("not model signing")),
        "{as_model:?}"
    );
}

// ---- OpenPGP ----------------------------------------------------------------------------------

fn pgp_case(
    key: &str,
    sig: &str,
    data: &str,
    options: &PgpOptions,
) -> Result<SignatureReport, VerifyError> {
    let ring = PgpKeyring::from_bytes(&read(&format!("gpg/keys/{key}")))?;
    let data = read(&format!("gpg/data/{data}"));
    verify_pgp_detached(
        &data[..],
        &read(&format!("gpg/sigs/{sig}")),
        &ring,
        options,
        now(),
    )
}

#[test]
fn gpg_cases_as_expected() {
    let strict = PgpOptions::default();
    let lenient_expiry = PgpOptions {
        expired: ExpiredKeys::AcceptIfValidWhenSigned,
        ..PgpOptions::default()
    };
    let accept_revoked = PgpOptions {
        revoked: RevokedKeys::Accept,
        ..PgpOptions::default()
    };
    let cases: Vec<(&str, &str, &str, &str, &PgpOptions, bool)> = vec![
        (
            "pos_file_ed25519",
            "signer.pub.asc",
            "SHA256SUMS.asc",
            "SHA256SUMS",
            &strict,
            true,
        ),
        (
            "pos_model_file",
            "signer.pub.asc",
            "model.safetensors.asc",
            "model.safetensors",
            &strict,
            true,
        ),
        (
            "pos_rsa3072",
            "rsa.pub.asc",
            "SHA256SUMS.rsa.asc",
            "SHA256SUMS",
            &strict,
            true,
        ),
        (
            "pos_binary_sig",
            "signer.pub.asc",
            "SHA256SUMS.sig",
            "SHA256SUMS",
            &strict,
            true,
        ),
        (
            "neg_wrong_key",
            "signer.pub.asc",
            "SHA256SUMS.otherkey.asc",
            "SHA256SUMS",
            &strict,
            false,
        ),
        (
            "neg_tampered_data",
            "signer.pub.asc",
            "SHA256SUMS.asc",
            "SHA256SUMS.tampered",
            &strict,
            false,
        ),
        (
            "neg_sig_over_other_file",
            "signer.pub.asc",
            "model.safetensors.asc",
            "SHA256SUMS",
            &strict,
            false,
        ),
        (
            "neg_tampered_sig",
            "signer.pub.asc",
            "SHA256SUMS.tamperedsig.sig",
            "SHA256SUMS",
            &strict,
            false,
        ),
        // policy rows: ExpiredKeys::Refuse (default) fails; AcceptIfValidWhenSigned passes
        // because both signatures were made while the key was valid.
        (
            "neg_expired_key_now",
            "expired.pub.asc",
            "SHA256SUMS.expiredkey.asc",
            "SHA256SUMS",
            &strict,
            false,
        ),
        (
            "neg_expired_key_now@valid_when_signed",
            "expired.pub.asc",
            "SHA256SUMS.expiredkey.asc",
            "SHA256SUMS",
            &lenient_expiry,
            true,
        ),
        (
            "neg_key_expired_2020",
            "old_expired_2020.pub.asc",
            "SHA256SUMS.oldkey-sig-in-2020.asc",
            "SHA256SUMS",
            &strict,
            false,
        ),
        (
            "neg_key_expired_2020@valid_when_signed",
            "old_expired_2020.pub.asc",
            "SHA256SUMS.oldkey-sig-in-2020.asc",
            "SHA256SUMS",
            &lenient_expiry,
            true,
        ),
        (
            "neg_revoked_key",
            "revoked.pub.asc",
            "SHA256SUMS.revokedkey.asc",
            "SHA256SUMS",
            &strict,
            false,
        ),
        (
            "neg_revoked_key@valid_when_signed",
            "revoked.pub.asc",
            "SHA256SUMS.revokedkey.asc",
            "SHA256SUMS",
            &lenient_expiry,
            false,
        ),
        (
            "neg_revoked_key@accept_revoked",
            "revoked.pub.asc",
            "SHA256SUMS.revokedkey.asc",
            "SHA256SUMS",
            &accept_revoked,
            true,
        ),
        // Added vectors: a signing subkey bound to a certify-only primary, and the same subkey
        // expired one second after it signed.
        (
            "pos_signing_subkey",
            "subkey.pub.asc",
            "SHA256SUMS.subkey.asc",
            "SHA256SUMS",
            &strict,
            true,
        ),
        (
            "neg_subkey_expired",
            "subkey_expired.pub.asc",
            "SHA256SUMS.subkey.asc",
            "SHA256SUMS",
            &strict,
            false,
        ),
        (
            "neg_subkey_expired@valid_when_signed",
            "subkey_expired.pub.asc",
            "SHA256SUMS.subkey.asc",
            "SHA256SUMS",
            &lenient_expiry,
            true,
        ),
    ];
    let mut mismatches = Vec::new();
    for (name, key, sig, data, options, expected) in cases {
        let report = pgp_case(key, sig, data, options);
        println!(
            "{name:<45} {:<5} {}",
            if expected { "pass" } else { "fail" },
            short(&report)
        );
        if passed(&report) != expected || report.is_err() {
            mismatches.push(format!("{name}: {}", short(&report)));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[test]
fn gpg_failures_name_the_reason() {
    let strict = PgpOptions::default();
    let failure = |key: &str, sig: &str, data: &str| {
        pgp_case(key, sig, data, &strict)
            .unwrap_or_else(|e| panic!("{e}"))
            .failure()
            .cloned()
    };
    assert!(matches!(
        failure("signer.pub.asc", "SHA256SUMS.otherkey.asc", "SHA256SUMS"),
        Some(Failure::UnknownSigner { .. })
    ));
    assert!(matches!(
        failure("signer.pub.asc", "SHA256SUMS.asc", "SHA256SUMS.tampered"),
        Some(Failure::BadSignature)
    ));
    assert!(matches!(
        failure("expired.pub.asc", "SHA256SUMS.expiredkey.asc", "SHA256SUMS"),
        Some(Failure::KeyExpired { .. })
    ));
    assert!(matches!(
        failure("revoked.pub.asc", "SHA256SUMS.revokedkey.asc", "SHA256SUMS"),
        Some(Failure::KeyRevoked { .. })
    ));
    let ok = pgp_case("signer.pub.asc", "SHA256SUMS.asc", "SHA256SUMS", &strict)
        .unwrap_or_else(|e| panic!("{e}"));
    match ok.outcome {
        Outcome::Verified {
            signer:
                verifier::Signer::Pgp {
                    fingerprint,
                    user_ids,
                    ..
                },
            ..
        } => {
            assert_eq!(fingerprint, "F295C52AF2CC900C8FE2D80641E3410C70421500");
            assert!(
                user_ids.iter().any(|u| u.contains("signer@example.test")),
                "{user_ids:?}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn gpg_signed_sha256sums_cover_the_model() {
    let ring =
        PgpKeyring::from_bytes(&read("gpg/keys/signer.pub.asc")).unwrap_or_else(|e| panic!("{e}"));
    let manifest = read("gpg/data/SHA256SUMS");
    let sig = read("gpg/sigs/SHA256SUMS.asc");
    let options = PgpOptions::default();
    let stage = Stage::new("models/sample_model");
    let files = ModelFiles::from_dir(&stage.dir).unwrap_or_else(|e| panic!("{e}"));
    let ok = verify_pgp_manifest(&manifest, &sig, &ring, &files, &options, now());
    assert!(passed(&ok), "{}", short(&ok));

    stage.write("extra.txt", b"unsigned");
    let files = ModelFiles::from_dir(&stage.dir).unwrap_or_else(|e| panic!("{e}"));
    let extra = verify_pgp_manifest(&manifest, &sig, &ring, &files, &options, now());
    assert!(matches!(
        extra.as_ref().ok().and_then(|r| r.failure()),
        Some(Failure::UnsignedFile { .. })
    ));

    let stage = Stage::new("models/sample_model");
    stage.write("model.safetensors", b"tampered");
    let files = ModelFiles::from_dir(&stage.dir).unwrap_or_else(|e| panic!("{e}"));
    let tampered = verify_pgp_manifest(&manifest, &sig, &ring, &files, &options, now());
    assert!(matches!(
        tampered.as_ref().ok().and_then(|r| r.failure()),
        Some(Failure::DigestMismatch { .. })
    ));
}

// ---- Real signer outputs (model-transparency scripts/tests, signers v0.2.0 … v1.1.0) ------------

const MT: &str = "external/model-transparency";
const MT_IDENTITY: &str = "stefanb@us.ibm.com";
const MT_ISSUER: &str = "https://sigstore.verify.ibm.com/oauth2";

/// Verifies `vector` (a directory, or `vector/file` for a single-file model) with `policy`.
fn run_mt(
    vector: &str,
    single_file: Option<&str>,
    policy: &TrustPolicy,
) -> Result<SignatureReport, VerifyError> {
    let dir = fixtures().join(MT).join(vector);
    let files = match single_file {
        Some(file) => ModelFiles::from_file(&dir.join(file))?,
        None => {
            let mut files = ModelFiles::from_dir(&dir)?;
            files.remove("model.sig");
            files
        }
    };
    let sig = std::fs::read(dir.join("model.sig")).unwrap_or_default();
    verify_model_signature(&files, &sig, policy, now())
}

fn mt_sigstore(root: &str, identity: &str) -> TrustPolicy {
    let policy = SigstorePolicy::new(
        &read(root),
        SigstoreSigner::Identity {
            identity: identity.to_string(),
            issuer: MT_ISSUER.to_string(),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"));
    TrustPolicy::new(TrustMethod::Sigstore(Box::new(policy)))
}

#[test]
fn real_signer_outputs_of_every_shape() {
    let with_ignore = |mut p: TrustPolicy| {
        p.extra_ignore_paths.push("ignore-me".to_string());
        p
    };
    let key = || key_policy(&format!("{MT}/keys/signing-key-pub.pem"));
    let cert = || cert_policy(&format!("{MT}/keys/ca-cert.pem"));
    let keyless = || mt_sigstore(PROD_ROOT, MT_IDENTITY);
    let mut legacy = cert();
    legacy.legacy = LegacyFormat::Accept;
    // (vector, single file, policy, expected)
    let cases: Vec<(&str, Option<&str>, TrustPolicy, bool)> = vec![
        // key: rawBytes + keyDetails + keyid null, single file "." (v0.3.1, v1.0.0) ...
        ("v0.3.1-elliptic-key", Some("signme-1"), key(), true),
        ("v1.0.0-elliptic-key", Some("signme-1"), key(), true),
        // ... which names the file, not its directory.
        ("v1.0.0-elliptic-key", None, key(), false),
        // v1.0.1 records no ignore_paths: the excluded file must be ignored verifier-side.
        ("v1.0.1-elliptic-key", None, with_ignore(key()), true),
        ("v1.0.1-elliptic-key", None, key(), false),
        ("v1.1.0-elliptic-key", None, key(), true),
        (
            "v1.1.0-elliptic-key",
            None,
            key_policy("keys/signer_p384.pub.pem"),
            false,
        ),
        // certificate: x509CertificateChain in a v0.3 bundle, RSA-3072 root.
        ("v0.3.1-certificate", None, cert(), true),
        ("v1.0.0-certificate", None, cert(), true),
        ("v1.0.1-certificate", None, with_ignore(cert()), true),
        ("v1.1.0-certificate", None, cert(), true),
        (
            "v1.1.0-certificate",
            None,
            cert_policy("pki/root.crt.pem"),
            false,
        ),
        // v0.2.0: legacy predicate and PAE, refused unless the policy accepts it.
        ("v0.2.0-certificate", None, cert(), false),
        ("v0.2.0-certificate", None, legacy, true),
        // keyless against the public-good root (v1.0.x: envelopeHash over Python separators).
        ("v0.3.1-sigstore", None, keyless(), true),
        ("v1.0.0-sigstore", None, keyless(), true),
        ("v1.0.1-sigstore", None, with_ignore(keyless()), true),
        ("v1.1.0-sigstore", None, keyless(), true),
        (
            "v1.1.0-sigstore",
            None,
            mt_sigstore(PROD_ROOT, "someone-else@example.com"),
            false,
        ),
        (
            "v1.1.0-sigstore",
            None,
            mt_sigstore(STAGING_ROOT, MT_IDENTITY),
            false,
        ),
    ];
    let mut mismatches = Vec::new();
    for (vector, single, policy, expected) in &cases {
        let report = run_mt(vector, *single, policy);
        let row = format!(
            "{vector}{}",
            single.map(|f| format!("/{f}")).unwrap_or_default()
        );
        println!(
            "{row:<35} {:<5} {}",
            if *expected { "pass" } else { "fail" },
            short(&report)
        );
        if passed(&report) != *expected || report.is_err() {
            mismatches.push(format!("{row}: {}", short(&report)));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));

    // A keyless signature by someone else names both identities.
    let report = run_mt(
        "v1.1.0-sigstore",
        None,
        &mt_sigstore(PROD_ROOT, "someone-else@example.com"),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(report.failure(), Some(Failure::WrongSigner { found_identity, .. }) if found_identity == MT_IDENTITY),
        "{report:?}"
    );
}

/// One-byte mutations of a valid `model.sig`: never a panic or an error (a bad signature file
/// is a report, not an I/O problem), and never verified when the byte is inside the signed
/// payload or the signature.
#[test]
fn mutated_model_sig_never_verifies_or_panics() {
    let sig = read("ms/key_p256/model/model.sig");
    let text = String::from_utf8_lossy(&sig).into_owned();
    let span = |field: &str| {
        let start = text.find(field).unwrap_or_else(|| panic!("{field}")) + field.len();
        let len = text[start..].find('"').unwrap_or(0);
        start..start + len
    };
    let signed_spans = [span("\"payload\":\""), span("\"sig\":\"")];
    let mut files = ModelFiles::from_dir(&fixtures().join("ms/key_p256/model"))
        .unwrap_or_else(|e| panic!("{e}"));
    files.remove("model.sig");
    let policy = key_policy("keys/signer_p256.pub.pem");
    for i in (0..sig.len()).step_by(7) {
        let mut mutated = sig.clone();
        mutated[i] ^= 0x01;
        let report = verify_model_signature(&files, &mutated, &policy, now());
        let report = report.unwrap_or_else(|e| panic!("byte {i}: error {e}"));
        if signed_spans.iter().any(|s| s.contains(&i)) {
            assert!(!report.is_verified(), "byte {i} flipped and still verified");
        }
    }
    for len in [0, 1, sig.len() / 2, sig.len() - 1] {
        let report = verify_model_signature(&files, &sig[..len], &policy, now());
        assert!(
            matches!(report, Ok(r) if !r.is_verified()),
            "truncated to {len}"
        );
    }
}
