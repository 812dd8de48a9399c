//! The one path every upstream byte takes: stream into quarantine while hashing, check size and
//! digest against what upstream declared, scan, promote. Protocol front ends only say where the
//! bytes come from ([`Opener`]) and what they must hash to ([`Expect`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use verifier::{Digest, GitOid};

use crate::error::MirrorError;
use crate::flight::Progress;
use crate::quarantine::{Quarantined, WriteError};
use crate::store::Store;
use crate::upstream::{FileResponse, OpenError};

/// How many times a broken download is resumed before giving up.
const MAX_ATTEMPTS: u32 = 6;

/// Opens the upstream bytes of one artifact from an offset (to resume after a break).
pub(crate) type Opener =
    Box<dyn Fn(u64) -> BoxFuture<'static, Result<FileResponse, OpenError>> + Send + Sync>;

/// What the bytes must hash to.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect {
    /// sha256 (LFS files, OCI blobs and manifests).
    Sha256(Digest),
    /// git blob id (files kept in git itself).
    GitBlob(GitOid),
}

/// A promoted artifact.
#[derive(Debug, Clone)]
pub(crate) struct Promoted {
    /// The blob.
    pub digest: Digest,
    /// One-line scan summary.
    pub scan: String,
}

/// One artifact's journey from upstream to the blob store: stream into quarantine while hashing,
/// check size and digest, scan, promote. Shared by every protocol.
pub(crate) struct FetchTask {
    pub store: Arc<Store>,
    pub open: Opener,
    /// Names the artifact in messages (a repo path or a digest).
    pub label: String,
    /// Declared size.
    pub size: u64,
    pub expect: Expect,
    /// Formats the bytes must have, when the upstream declared what they are (an Ollama
    /// `.model` layer must be GGUF): anything else is refused even if it scans clean.
    pub formats: Option<&'static [verifier::Format]>,
    /// The scanner's options and where its use of operator admissions is recorded.
    pub scanning: Arc<Scanning>,
}

/// What the scanner is told (`[scan]`), and the audit log that hears when a file passed only
/// because of the operator's `allow_globals`.
pub(crate) struct Scanning {
    pub options: verifier::ScanOptions,
    pub gov: Arc<crate::governance::Governance>,
}

/// A message to the blocking writer.
enum Chunk {
    Data(Bytes),
    /// The upstream ignored our `Range`: start over.
    Restart,
}

impl FetchTask {
    /// Fetch, verify, scan, promote. The inner `Err(String)` is a refusal reason for the bytes.
    pub(crate) async fn run(
        &self,
        progress: &Progress,
    ) -> Result<Result<Promoted, String>, MirrorError> {
        let declared = self.size;
        // Git ids are over `blob <size>\0` + content: computed only for files kept in git itself.
        let git_size = matches!(self.expect, Expect::GitBlob(_)).then_some(declared);
        let store = self.store.clone();
        let writer =
            tokio::task::spawn_blocking(move || store.quarantine_writer(declared, git_size))
                .await
                .map_err(|e| MirrorError::Task(e.to_string()))??;
        // The writer lives on a blocking thread; chunks reach it through a bounded channel, so
        // memory stays bounded whatever the file size and hashing overlaps the network.
        let (tx, mut rx) = mpsc::channel::<Chunk>(16);
        let writer_task = tokio::task::spawn_blocking(move || {
            let mut writer = writer;
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    Chunk::Data(b) => writer.write(&b)?,
                    Chunk::Restart => writer.reset()?,
                }
            }
            Ok::<_, WriteError>(writer.finish()?)
        });
        let streamed = self.stream_into(&tx, declared, progress).await;
        drop(tx);
        let written = writer_task
            .await
            .map_err(|e| MirrorError::Task(e.to_string()))?;
        if let Err(reason) = streamed? {
            return Ok(Err(reason));
        }
        let quarantined = match written {
            Ok(q) => q,
            Err(WriteError::TooLarge { limit }) => {
                return Ok(Err(format!(
                    "upstream sent more than the declared {limit} bytes"
                )))
            }
            Err(WriteError::Mirror(e)) => return Err(e),
        };
        if let Err(reason) = self.check_digests(&quarantined) {
            return Ok(Err(reason));
        }
        let scan = match self.scan(&quarantined).await? {
            Ok(summary) => summary,
            Err(reason) => return Ok(Err(reason)),
        };
        let store = self.store.clone();
        let digest = tokio::task::spawn_blocking(move || store.promote(quarantined))
            .await
            .map_err(|e| MirrorError::Task(e.to_string()))??;
        tracing::info!(artifact = %self.label, %digest, "promoted");
        Ok(Ok(Promoted { digest, scan }))
    }

    /// Streams the file into the writer, resuming with `Range` after breaks and honouring
    /// `Retry-After`. `Ok(Err(reason))` means the upstream's bytes are unacceptable.
    async fn stream_into(
        &self,
        tx: &mpsc::Sender<Chunk>,
        declared: u64,
        progress: &Progress,
    ) -> Result<Result<(), String>, MirrorError> {
        let mut offset = 0u64;
        let mut attempt = 0u32;
        let mut last_error = String::new();
        while offset < declared || (declared == 0 && attempt == 0) {
            if attempt > 0 {
                if attempt >= MAX_ATTEMPTS {
                    return Err(MirrorError::Upstream(format!(
                        "download of {} failed after {attempt} attempts: {last_error}",
                        self.label
                    )));
                }
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(5))).await;
            }
            attempt += 1;
            let resp = match (self.open)(offset).await {
                Ok(r) => r,
                Err(OpenError::Permanent(m)) => return Err(MirrorError::Upstream(m)),
                Err(OpenError::Transient {
                    detail,
                    retry_after,
                }) => {
                    if let Some(s) = retry_after {
                        tokio::time::sleep(Duration::from_secs(s.min(30))).await;
                    }
                    last_error = detail;
                    continue;
                }
            };
            if !resp.partial && offset > 0 {
                offset = 0;
                if tx.send(Chunk::Restart).await.is_err() {
                    return Ok(Ok(())); // the writer stopped; its own error explains why
                }
            }
            if let Some(len) = resp.response.content_length() {
                if offset + len != declared {
                    return Ok(Err(format!(
                        "upstream Content-Length {} does not match the declared size {declared}",
                        offset + len
                    )));
                }
            }
            let mut body = resp.response.bytes_stream();
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(b) => {
                        if offset + b.len() as u64 > declared {
                            return Ok(Err(format!(
                                "upstream sent more than the declared {declared} bytes"
                            )));
                        }
                        offset += b.len() as u64;
                        progress.set(offset, declared);
                        if tx.send(Chunk::Data(b)).await.is_err() {
                            return Ok(Ok(()));
                        }
                    }
                    Err(e) => {
                        last_error = crate::upstream::describe(&e);
                        break;
                    }
                }
            }
            if offset < declared && last_error.is_empty() {
                last_error = "connection closed before the declared size".into();
            }
            if declared == 0 {
                break;
            }
        }
        Ok(Ok(()))
    }

    /// Size and digest against what upstream declared.
    fn check_digests(&self, q: &Quarantined) -> Result<(), String> {
        let got = q.outcome();
        if got.len != self.size {
            return Err(format!(
                "size {} differs from the declared {}",
                got.len, self.size
            ));
        }
        match self.expect {
            Expect::Sha256(want) if want != got.sha256 => Err(format!(
                "sha256 mismatch: upstream declared {}, received bytes hash to {}",
                want.hex(),
                got.sha256.hex()
            )),
            Expect::GitBlob(want) if got.git_oid != Some(want) => Err(format!(
                "git blob id mismatch: upstream declared {want}, received bytes hash to {}",
                got.git_oid.map_or_else(|| "nothing".into(), |o| o.hex())
            )),
            _ => Ok(()),
        }
    }

    /// Runs the scanners over the quarantined file (off the async workers). `Ok(Err(reason))` if
    /// the file must be refused.
    async fn scan(&self, q: &Quarantined) -> Result<Result<String, String>, MirrorError> {
        let path = q.path().to_owned();
        let len = q.outcome().len;
        let formats = self.formats;
        let scanning = self.scanning.clone();
        let (label, digest) = (self.label.clone(), q.outcome().sha256);
        tokio::task::spawn_blocking(move || {
            let file = std::fs::File::open(&path).map_err(MirrorError::io(&path))?;
            let report = verifier::scan_with(std::io::BufReader::new(file), len, &scanning.options)
                .map_err(|e| MirrorError::Io {
                    path: path.clone(),
                    source: std::io::Error::other(e.to_string()),
                })?;
            if let Some(allowed) = formats.filter(|f| !f.contains(&report.format)) {
                let want: Vec<String> = allowed
                    .iter()
                    .map(|f| format!("{f:?}").to_lowercase())
                    .collect();
                return Ok(Err(format!(
                    "content is {:?}, but the upstream declared {}",
                    report.format,
                    want.join(" or ")
                )));
            }
            if report.is_clean() && !report.admitted_globals.is_empty() {
                scanning.gov.audit(signing::AuditEvent::ScanAllowance {
                    file: label,
                    digest,
                    globals: report.admitted_globals.clone(),
                });
            }
            Ok(if report.is_clean() {
                Ok(report.summary())
            } else {
                Err(report.summary())
            })
        })
        .await
        .map_err(|e| MirrorError::Task(e.to_string()))?
    }
}
