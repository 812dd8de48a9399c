//! `airlock verify` end to end: exit codes 0 (verified), 1 (failed, with the reason), 2 (error),
//! text and JSON output. Uses the verifier crate's signing fixtures; no network.

use std::path::PathBuf;
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../verifier/tests/fixtures/signing")
}

fn airlock(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("verify")
        .args(args)
        .current_dir(fixtures())
        .output()
        .unwrap_or_else(|e| panic!("running airlock: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn key_signed_model_verifies() {
    let (code, out) = airlock(&["ms/key_p256/model", "--key", "keys/signer_p256.pub.pem"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("verified") && out.contains("model.safetensors"),
        "{out}"
    );
}

#[test]
fn tampered_model_fails_with_the_reason() {
    let (code, out) = airlock(&[
        "ms/neg_tampered_file/model",
        "--key",
        "keys/signer_p256.pub.pem",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("model.safetensors") && out.contains("differs"),
        "{out}"
    );
}

#[test]
fn certificate_and_json_output() {
    let (code, out) = airlock(&[
        "ms/cert_chain/model",
        "--cert-root",
        "pki/root.crt.pem",
        "--format",
        "json",
    ]);
    assert_eq!(code, 0, "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["report"]["outcome"]["status"], "verified");
    assert_eq!(json["report"]["outcome"]["signer"]["method"], "certificate");

    let (code, out) = airlock(&[
        "ms/cert_expired_leaf/model",
        "--cert-root",
        "pki/old_root.crt.pem",
    ]);
    assert_eq!(code, 1, "{out}");
    let (code, out) = airlock(&[
        "ms/cert_expired_leaf/model",
        "--cert-root",
        "pki/old_root.crt.pem",
        "--cert-time",
        "leaf-not-before",
    ]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn pgp_detached_signature_over_a_file() {
    let (code, out) = airlock(&[
        "gpg/data/SHA256SUMS",
        "--signature",
        "gpg/sigs/SHA256SUMS.asc",
        "--pgp-key",
        "gpg/keys/signer.pub.asc",
    ]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = airlock(&[
        "gpg/data/SHA256SUMS",
        "--signature",
        "gpg/sigs/SHA256SUMS.revokedkey.asc",
        "--pgp-key",
        "gpg/keys/revoked.pub.asc",
    ]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("revoked"), "{out}");
}

#[test]
fn pgp_signed_list_covers_the_model_directory() {
    let (code, out) = airlock(&[
        "models/sample_model",
        "--manifest",
        "gpg/data/SHA256SUMS",
        "--signature",
        "gpg/sigs/SHA256SUMS.asc",
        "--pgp-key",
        "gpg/keys/signer.pub.asc",
    ]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn errors_exit_2_and_missing_trust_is_a_usage_error() {
    let (code, out) = airlock(&["ms/key_p256/model", "--key", "no/such/key.pem"]);
    assert_eq!(code, 2, "{out}");
    let (code, out) = airlock(&["ms/key_p256/model"]);
    assert_eq!(code, 2, "{out}");
}
