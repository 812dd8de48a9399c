//! `airlock verify`: check a downloaded model's signature by hand, with the same verifier the
//! mirror runs before it promotes anything. Exit 0 verified, 1 failed (with the reason), 2 error.

use anyhow::Context as _;
use clap::ValueEnum;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use verifier::{
    AnchorRule, CertificateTime, ExpiredKeys, LegacyFormat, ModelFiles, Outcome, PgpKeyring,
    PgpOptions, SignatureReport, SigstorePolicy, SigstoreSigner, TrustMethod, TrustPolicy,
    UnsignedFiles,
};

/// Arguments of `airlock verify`.
///
/// Exactly one trust source: `--key`, `--cert-root`, `--identity`+`--issuer`+`--trusted-root`,
/// or `--pgp-key`. Everything is offline: trust material comes from files.
#[derive(clap::Args, Debug)]
#[command(group(
    clap::ArgGroup::new("trust")
        .required(true)
        .args(["key", "cert_root", "identity", "pgp_key"])
))]
pub struct VerifyArgs {
    /// Model directory, or a single model file.
    pub path: PathBuf,
    /// Signature file. Default: PATH/model.sig for a directory (dropped from the file set),
    /// PATH.sig for a single file; with --pgp-key, MANIFEST.asc, PATH.asc or PATH.sig.
    #[arg(long, value_name = "FILE")]
    pub signature: Option<PathBuf>,
    /// Model signing, key method: trusted ECDSA public key (PEM).
    #[arg(long, value_name = "PEM")]
    pub key: Option<PathBuf>,
    /// Model signing, certificate method: trusted root certificate(s) (PEM).
    #[arg(long, value_name = "PEM")]
    pub cert_root: Option<PathBuf>,
    /// Model signing, keyless Sigstore: the signer's identity (certificate SAN, exact).
    #[arg(long, requires_all = ["issuer", "trusted_root"])]
    pub identity: Option<String>,
    /// Keyless Sigstore: the OIDC issuer, e.g. https://token.actions.githubusercontent.com.
    #[arg(long, value_name = "URL", requires = "identity")]
    pub issuer: Option<String>,
    /// Keyless Sigstore: trusted_root.json (or a ClientTrustConfig) of the Sigstore instance.
    #[arg(long, value_name = "JSON", requires = "identity")]
    pub trusted_root: Option<PathBuf>,
    /// OpenPGP: trusted public key(s), armored or binary.
    #[arg(long, value_name = "KEY.asc")]
    pub pgp_key: Option<PathBuf>,
    /// OpenPGP over a sha256sum-style list: the list (default PATH/SHA256SUMS when PATH is a
    /// directory). Every file of the model must be listed with its sha256.
    #[arg(long, value_name = "FILE", requires = "pgp_key")]
    pub manifest: Option<PathBuf>,
    /// At what time the certificate chain must be valid.
    #[arg(long, value_enum, default_value_t = CertTimeArg::Now)]
    pub cert_time: CertTimeArg,
    /// Which configured certificates may end a chain.
    #[arg(long, value_enum, default_value_t = AnchorsArg::Roots)]
    pub anchors: AnchorsArg,
    /// What to do with files that are neither signed nor ignored.
    #[arg(long, value_enum, default_value_t = UnsignedArg::Refuse)]
    pub unsigned: UnsignedArg,
    /// Accept the legacy model signing v0.2 format.
    #[arg(long, value_enum, default_value_t = LegacyArg::Refuse)]
    pub legacy: LegacyArg,
    /// OpenPGP: what to do with a key that has expired.
    #[arg(long, value_enum, default_value_t = PgpExpiredArg::Refuse)]
    pub pgp_expired: PgpExpiredArg,
    /// Extra model-relative path to ignore (repeatable), on top of .git, .gitattributes,
    /// .github, .gitignore. Ignored files are never covered.
    #[arg(long = "ignore-path", value_name = "PATH")]
    pub ignore_paths: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// `--cert-time`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CertTimeArg {
    /// The chain must be valid now.
    Now,
    /// The chain must have been valid at the leaf's notBefore (model_signing's behaviour).
    LeafNotBefore,
}

/// `--anchors`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum AnchorsArg {
    /// Only self-signed configured certificates are anchors.
    Roots,
    /// Any configured certificate is an anchor (partial chains).
    Any,
}

/// `--unsigned`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum UnsignedArg {
    /// Fail on a file that is neither signed nor ignored.
    Refuse,
    /// Verify anyway and list such files as unsigned (not covered).
    Exclude,
}

/// `--legacy`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LegacyArg {
    /// Refuse the v0.2 format.
    Refuse,
    /// Accept it.
    Accept,
}

/// `--pgp-expired`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PgpExpiredArg {
    /// The key must be unexpired now.
    Refuse,
    /// The key must have been unexpired when it signed.
    ValidWhenSigned,
}

/// `--format`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    /// One line of verdict, then the covered files.
    Text,
    /// The report as JSON.
    Json,
}

fn read(path: &Path, what: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {what} {}", path.display()))
}

/// Runs the command.
pub fn run(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let now = std::time::SystemTime::now();
    let is_dir = std::fs::metadata(&args.path)
        .with_context(|| format!("reading {}", args.path.display()))?
        .is_dir();
    let (report, signature) = if let Some(key_file) = &args.pgp_key {
        verify_pgp(&args, key_file, is_dir, now)?
    } else {
        verify_model(&args, is_dir, now)?
    };
    print(&args, &signature, &report)?;
    Ok(if report.is_verified() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn verify_model(
    args: &VerifyArgs,
    is_dir: bool,
    now: std::time::SystemTime,
) -> anyhow::Result<(SignatureReport, PathBuf)> {
    let signature = match (&args.signature, is_dir) {
        (Some(s), _) => s.clone(),
        (None, true) => args.path.join("model.sig"),
        (None, false) => with_suffix(&args.path, "sig"),
    };
    let mut files = if is_dir {
        ModelFiles::from_dir(&args.path)?
    } else {
        ModelFiles::from_file(&args.path)?
    };
    if is_dir {
        drop_if_inside(&mut files, &args.path, &signature);
    }
    let method = if let Some(pem) = &args.key {
        TrustPolicy::key_pem(&read(pem, "key")?)?.method
    } else if let Some(pem) = &args.cert_root {
        let mut method = TrustPolicy::certificate_pem(&read(pem, "root certificate")?)?.method;
        if let TrustMethod::Certificate { rule, time, .. } = &mut method {
            *rule = match args.anchors {
                AnchorsArg::Roots => AnchorRule::SelfSignedRoots,
                AnchorsArg::Any => AnchorRule::AnyConfigured,
            };
            *time = match args.cert_time {
                CertTimeArg::Now => CertificateTime::Now,
                CertTimeArg::LeafNotBefore => CertificateTime::LeafNotBefore,
            };
        }
        method
    } else {
        // clap's group guarantees one trust source; with --identity it requires the other two.
        let (Some(identity), Some(issuer), Some(root)) =
            (&args.identity, &args.issuer, &args.trusted_root)
        else {
            anyhow::bail!("one of --key, --cert-root, --identity/--issuer/--trusted-root, --pgp-key is required");
        };
        TrustMethod::Sigstore(Box::new(SigstorePolicy::new(
            &read(root, "trusted root")?,
            SigstoreSigner::Identity {
                identity: identity.clone(),
                issuer: issuer.clone(),
            },
        )?))
    };
    let mut policy = TrustPolicy::new(method);
    policy.unsigned_files = match args.unsigned {
        UnsignedArg::Refuse => UnsignedFiles::Refuse,
        UnsignedArg::Exclude => UnsignedFiles::Exclude,
    };
    policy.legacy = match args.legacy {
        LegacyArg::Refuse => LegacyFormat::Refuse,
        LegacyArg::Accept => LegacyFormat::Accept,
    };
    policy
        .extra_ignore_paths
        .extend(args.ignore_paths.iter().cloned());
    let sig = read(&signature, "signature")?;
    let report = verifier::verify_model_signature(&files, &sig, &policy, now)?;
    Ok((report, signature))
}

fn verify_pgp(
    args: &VerifyArgs,
    key_file: &Path,
    is_dir: bool,
    now: std::time::SystemTime,
) -> anyhow::Result<(SignatureReport, PathBuf)> {
    let keyring = PgpKeyring::from_bytes(&read(key_file, "OpenPGP key")?)?;
    let mut options = PgpOptions {
        expired: match args.pgp_expired {
            PgpExpiredArg::Refuse => ExpiredKeys::Refuse,
            PgpExpiredArg::ValidWhenSigned => ExpiredKeys::AcceptIfValidWhenSigned,
        },
        unsigned_files: match args.unsigned {
            UnsignedArg::Refuse => UnsignedFiles::Refuse,
            UnsignedArg::Exclude => UnsignedFiles::Exclude,
        },
        ..PgpOptions::default()
    };
    options
        .ignore_paths
        .extend(args.ignore_paths.iter().cloned());
    let manifest = match (&args.manifest, is_dir) {
        (Some(m), _) => Some(m.clone()),
        (None, true) => Some(args.path.join("SHA256SUMS")),
        (None, false) => None,
    };
    match manifest {
        Some(manifest) => {
            let signature = match &args.signature {
                Some(s) => s.clone(),
                None => first_existing(&manifest, &["asc", "sig"]),
            };
            let mut files = if is_dir {
                ModelFiles::from_dir(&args.path)?
            } else {
                ModelFiles::from_file(&args.path)?
            };
            if is_dir {
                drop_if_inside(&mut files, &args.path, &manifest);
                drop_if_inside(&mut files, &args.path, &signature);
            }
            let report = verifier::verify_pgp_manifest(
                &read(&manifest, "manifest")?,
                &read(&signature, "signature")?,
                &keyring,
                &files,
                &options,
                now,
            )?;
            Ok((report, signature))
        }
        None => {
            let signature = match &args.signature {
                Some(s) => s.clone(),
                None => first_existing(&args.path, &["asc", "sig"]),
            };
            let data = std::fs::File::open(&args.path)
                .with_context(|| format!("reading {}", args.path.display()))?;
            let report = verifier::verify_pgp_detached(
                std::io::BufReader::new(data),
                &read(&signature, "signature")?,
                &keyring,
                &options,
                now,
            )?;
            Ok((report, signature))
        }
    }
}

/// `path` with `.suffix` appended to its file name.
fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn first_existing(path: &Path, suffixes: &[&str]) -> PathBuf {
    suffixes
        .iter()
        .map(|s| with_suffix(path, s))
        .find(|p| p.exists())
        .unwrap_or_else(|| with_suffix(path, suffixes[0]))
}

/// Removes `file` from the set when it lies inside `dir`: the signature (or signed list) is
/// not part of the model it signs, whatever path spells it (relative, `./`, `..`, or the default).
/// The entry's own place in the directory decides, not where a symlink named there points: only
/// its parent directory is resolved.
fn drop_if_inside(files: &mut ModelFiles, dir: &Path, file: &Path) {
    let (Some(parent), Some(name)) = (file.parent(), file.file_name()) else {
        return;
    };
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let (Ok(dir), Ok(parent)) = (dir.canonicalize(), parent.canonicalize()) else {
        return;
    };
    let file = parent.join(name);
    if let Ok(rel) = file.strip_prefix(&dir) {
        let name: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        files.remove(&name.join("/"));
    }
}

fn print(args: &VerifyArgs, signature: &Path, report: &SignatureReport) -> anyhow::Result<()> {
    match args.format {
        Format::Json => {
            let json = serde_json::json!({
                "path": args.path,
                "signature": signature,
                "report": report,
            });
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        Format::Text => match &report.outcome {
            Outcome::Verified {
                signer,
                covered,
                ignored,
                unsigned,
            } => {
                println!(
                    "verified: {} ({} signed by {})",
                    args.path.display(),
                    signature.display(),
                    describe(signer)
                );
                for file in covered {
                    for d in &file.digests {
                        match d.range {
                            Some((start, end)) => println!(
                                "  covered  {}[{start}..{end}]  {}:{}",
                                file.path, d.algorithm, d.hex
                            ),
                            None => println!("  covered  {}  {}:{}", file.path, d.algorithm, d.hex),
                        }
                    }
                    if file.digests.is_empty() {
                        println!("  covered  {}  (empty)", file.path);
                    }
                }
                for name in ignored {
                    println!("  ignored  {name}  (not covered by the signature)");
                }
                for name in unsigned {
                    println!("  UNSIGNED {name}  (not covered by the signature)");
                }
            }
            Outcome::Failed { reason } => {
                println!(
                    "FAILED: {} ({}): {reason}",
                    args.path.display(),
                    signature.display()
                );
            }
        },
    }
    Ok(())
}

fn describe(signer: &verifier::Signer) -> String {
    use verifier::Signer;
    match signer {
        Signer::Key { curve, spki_sha256 } => format!("{curve} key sha256:{spki_sha256}"),
        Signer::Certificate { subject, anchor } => {
            format!("certificate {subject}, chained to {anchor}")
        }
        Signer::Sigstore { identity, issuer } => format!("{identity} (issuer {issuer})"),
        Signer::SigstoreKey { spki_sha256 } => format!("managed key sha256:{spki_sha256}"),
        Signer::Pgp {
            fingerprint,
            user_ids,
            ..
        } => format!("OpenPGP {fingerprint} {}", user_ids.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: VerifyArgs,
    }

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../verifier/tests/fixtures/signing")
    }

    /// A scratch copy of `from`'s files, with `rename` applied to their names.
    fn copy_model(tag: &str, from: &[(PathBuf, &str)]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("airlock-verify-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (src, name) in from {
            let to = dir.join(name);
            std::fs::create_dir_all(to.parent().expect("has a parent")).expect("mkdir");
            std::fs::copy(src, &to).expect("copy fixture");
        }
        dir
    }

    fn verified(argv: &[&str]) -> Result<(), String> {
        let mut full = vec!["airlock-verify"];
        full.extend_from_slice(argv);
        let cli = Cli::try_parse_from(full).map_err(|e| e.to_string())?;
        let args = cli.args;
        let now = std::time::SystemTime::now();
        let is_dir = args.path.is_dir();
        let (report, _) = if let Some(k) = args.pgp_key.clone() {
            verify_pgp(&args, &k, is_dir, now)
        } else {
            verify_model(&args, is_dir, now)
        }
        .map_err(|e| e.to_string())?;
        match report.outcome {
            Outcome::Verified { .. } => Ok(()),
            other => Err(format!("{other:?}")),
        }
    }

    /// For each signing method, an explicit `--signature` inside the model directory is left out
    /// of the file set exactly like the default one: by its default name, by another name, in a
    /// subdirectory, and spelled relative to the working directory.
    #[test]
    fn explicit_signature_inside_the_directory_is_not_part_of_the_model() {
        let f = fixtures();
        let ms = |v: &str, n: &str| f.join("ms").join(v).join("model").join(n);
        let cases: Vec<(&str, &str, PathBuf, Vec<String>)> = vec![
            (
                "key",
                "key_p256",
                f.join("keys/signer_p256.pub.pem"),
                vec!["--key".into()],
            ),
            (
                "cert",
                "cert_chain",
                f.join("pki/root.crt.pem"),
                vec!["--cert-root".into()],
            ),
        ];
        for (tag, vector, trust, flag) in cases {
            for sig_name in ["model.sig", "release.sig", "sigs/model.sig"] {
                let dir = copy_model(
                    &format!("{tag}-{}", sig_name.replace('/', "-")),
                    &[
                        (ms(vector, "config.json"), "config.json"),
                        (ms(vector, "model.safetensors"), "model.safetensors"),
                        (ms(vector, "model.sig"), sig_name),
                    ],
                );
                let sig = dir.join(sig_name);
                let dotted = dir.join(".").join(sig_name);
                let trust = trust.to_string_lossy().into_owned();
                for spelled in [sig.clone(), dotted] {
                    let (d, s) = (dir.to_string_lossy(), spelled.to_string_lossy());
                    let r = verified(&[&d, "--signature", &s, &flag[0], &trust]);
                    assert_eq!(r, Ok(()), "{tag} with --signature {s}");
                }
                if sig_name == "model.sig" {
                    let d = dir.to_string_lossy();
                    assert_eq!(verified(&[&d, &flag[0], &trust]), Ok(()), "{tag} default");
                }
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }

    #[test]
    fn explicit_pgp_signature_and_manifest_inside_the_directory_are_not_part_of_the_model() {
        let f = fixtures();
        let model = f.join("models/sample_model");
        let dir = copy_model(
            "pgp",
            &[
                (model.join("config.json"), "config.json"),
                (model.join("model.safetensors"), "model.safetensors"),
                (f.join("gpg/data/SHA256SUMS"), "SHA256SUMS"),
                (f.join("gpg/sigs/SHA256SUMS.asc"), "release/SHA256SUMS.asc"),
            ],
        );
        let (d, key) = (
            dir.to_string_lossy().into_owned(),
            f.join("gpg/keys/signer.pub.asc")
                .to_string_lossy()
                .into_owned(),
        );
        let sig = dir
            .join("release/SHA256SUMS.asc")
            .to_string_lossy()
            .into_owned();
        let manifest = dir.join("SHA256SUMS").to_string_lossy().into_owned();
        let r = verified(&[
            &d,
            "--pgp-key",
            &key,
            "--signature",
            &sig,
            "--manifest",
            &manifest,
        ]);
        assert_eq!(r, Ok(()));
        let r = verified(&[&d, "--pgp-key", &key, "--signature", &sig]);
        assert_eq!(r, Ok(()), "default manifest, explicit signature");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A signature that is a symlink inside the directory (as in a Hugging Face cache snapshot)
    /// is left out by its name there, not judged by where it points.
    #[cfg(unix)]
    #[test]
    fn symlinked_signature_is_dropped_by_its_name() {
        let f = fixtures();
        let ms = |n: &str| f.join("ms/key_p256/model").join(n);
        let dir = copy_model(
            "symlink",
            &[
                (ms("config.json"), "config.json"),
                (ms("model.safetensors"), "model.safetensors"),
                (ms("model.sig"), "../airlock-verify-symlink-target.sig"),
            ],
        );
        let target = dir.join("../airlock-verify-symlink-target.sig");
        std::os::unix::fs::symlink(&target, dir.join("model.sig")).expect("symlink");
        let (d, key) = (
            dir.to_string_lossy().into_owned(),
            f.join("keys/signer_p256.pub.pem")
                .to_string_lossy()
                .into_owned(),
        );
        let sig = dir.join("model.sig").to_string_lossy().into_owned();
        assert_eq!(verified(&[&d, "--signature", &sig, "--key", &key]), Ok(()));
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(&target);
    }
}
