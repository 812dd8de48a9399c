//! The one path every upstream byte takes: stream into quarantine while hashing, check size and
//! digest against what upstream declared, scan, promote. Protocol front ends only say where the
//! bytes come from ([`Opener`]) and what they must hash to ([`Expect`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use verifier::{Digest, GitOid};

use crate::config::FetchConfig;
use crate::error::MirrorError;
use crate::flight::Progress;
use crate::quarantine::{Quarantined, WriteError};
use crate::store::Store;
use crate::upstream::{ByteRange, FileResponse, OpenError};

/// How many times one range is (re)opened after breaks before the fetch gives up.
const MAX_ATTEMPTS: u32 = 6;
/// Bounds of the unit of a parallel fetch. Pieces are handed out in order, so the hashed prefix
/// trails the download by at most `connections` pieces (the read-back left after the last byte is
/// that much: 128 MiB at most with 8 connections, a fraction of a second of hashing). A file gets
/// about four pieces per connection, so a slow connection holding the last piece costs little.
const MIN_PIECE: u64 = 2 << 20;
const MAX_PIECE: u64 = 16 << 20;
/// Files up to this size come over one connection: more would cost more round trips than it saves.
const SINGLE_STREAM_MAX: u64 = 2 * MIN_PIECE;
/// A fetch receiving less than this many bytes per second over the stall window has stalled: a
/// drip-feeding upstream is as stuck as a silent one.
const MIN_BYTES_PER_SEC: u64 = 1024;
/// Progress lines are logged this often while a fetch runs (a fetch shorter than this logs none).
const LOG_EVERY: Duration = Duration::from_secs(15);
/// Scan throughput assumed until one large file has been scanned (bytes per second).
const ASSUMED_SCAN_RATE: u64 = 300 << 20;

/// Opens the upstream bytes of one artifact: a range of it (to resume after a break, or one piece
/// of a parallel fetch), or all of it.
pub(crate) type Opener =
    Box<dyn Fn(ByteRange) -> BoxFuture<'static, Result<FileResponse, OpenError>> + Send + Sync>;

/// What every fetch shares: the `[fetch]` settings and the scan throughput measured so far (the
/// part of an ETA that comes after the last byte).
#[derive(Debug)]
pub(crate) struct FetchEnv {
    connections: usize,
    stall: Duration,
    scan_rate: AtomicU64,
    /// Where fetch counts, durations, bytes and scan verdicts go.
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
}

impl FetchEnv {
    pub(crate) fn new(cfg: &FetchConfig, metrics: Arc<crate::metrics::Metrics>) -> FetchEnv {
        FetchEnv {
            connections: cfg.connections.max(1),
            stall: Duration::from_secs(cfg.stall_timeout_secs.max(1)),
            scan_rate: AtomicU64::new(ASSUMED_SCAN_RATE),
            metrics,
        }
    }

    /// Seconds the checks after the last byte should take for `size` bytes: the scan at the
    /// measured rate, plus a second for the fsync and the rename.
    fn after_secs(&self, size: u64) -> u64 {
        size / self.scan_rate.load(Ordering::Relaxed).max(1) + 1
    }

    fn record_scan(&self, size: u64, took: Duration) {
        // Small files say more about per-file overhead than about throughput.
        if size >= MAX_PIECE && took.as_secs_f64() > 0.0 {
            self.scan_rate
                .store((size as f64 / took.as_secs_f64()) as u64, Ordering::Relaxed);
        }
    }
}

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
    pub env: Arc<FetchEnv>,
    pub open: Opener,
    /// Names the artifact in messages (a repo path or a digest).
    pub label: String,
    /// Which upstream the bytes come from (`hf`, `ollama`), for `/metrics`.
    pub upstream: &'static str,
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
    /// Bytes at an offset.
    At(u64, Bytes),
    /// The upstream ignored our `Range` on a resume: start over.
    Restart,
}

/// Why a transfer stopped early.
enum Halt {
    /// The upstream's bytes are unacceptable (a refusal reason).
    Refuse(String),
    /// The transfer failed (upstream trouble, a stall, I/O).
    Fail(MirrorError),
    /// The writer stopped; its own error explains why.
    WriterGone,
}

impl From<MirrorError> for Halt {
    fn from(e: MirrorError) -> Self {
        Halt::Fail(e)
    }
}

impl FetchTask {
    /// Fetch, verify, scan, promote. The inner `Err(String)` is a refusal reason for the bytes.
    pub(crate) async fn run(
        &self,
        progress: &Progress,
    ) -> Result<Result<Promoted, String>, MirrorError> {
        use crate::metrics::FetchOutcome;
        let _running = self.env.metrics.fetch_started();
        let started = Instant::now();
        let outcome = self.run_checked(progress).await;
        let class = match &outcome {
            Ok(Ok(_)) => FetchOutcome::Promoted,
            Ok(Err(_)) => FetchOutcome::Refused,
            Err(_) => FetchOutcome::Failed,
        };
        self.env
            .metrics
            .fetch_finished(class, started.elapsed().as_secs_f64());
        outcome
    }

    async fn run_checked(
        &self,
        progress: &Progress,
    ) -> Result<Result<Promoted, String>, MirrorError> {
        let declared = self.size;
        progress.describe(&self.label, declared, self.env.after_secs(declared));
        // Git ids are over `blob <size>\0` + content: computed only for files kept in git itself.
        let git_size = matches!(self.expect, Expect::GitBlob(_)).then_some(declared);
        let store = self.store.clone();
        let writer =
            tokio::task::spawn_blocking(move || store.quarantine_writer(declared, git_size))
                .await
                .map_err(|e| MirrorError::Task(e.to_string()))??;
        // The writer lives on a blocking thread; chunks reach it through a bounded channel, so
        // memory stays bounded whatever the file size and hashing overlaps the network.
        let (tx, mut rx) = mpsc::channel::<Chunk>(32);
        let writer_task = tokio::task::spawn_blocking(move || {
            let mut writer = writer;
            while let Some(msg) = rx.blocking_recv() {
                match msg {
                    Chunk::At(offset, b) => writer.write_at(offset, &b)?,
                    Chunk::Restart => writer.reset()?,
                }
            }
            writer.finish()
        });
        let started = Instant::now();
        let streamed = self.watched(self.transfer(&tx, progress), progress).await;
        drop(tx);
        let written = writer_task
            .await
            .map_err(|e| MirrorError::Task(e.to_string()))?;
        match streamed {
            Ok(()) | Err(Halt::WriterGone) => {}
            Err(Halt::Refuse(reason)) => return Ok(Err(reason)),
            Err(Halt::Fail(e)) => return Err(e),
        }
        let quarantined = match written {
            Ok(q) => q,
            Err(e @ (WriteError::TooLarge { .. } | WriteError::Overlap { .. })) => {
                return Ok(Err(e.to_string()))
            }
            Err(e @ WriteError::Incomplete { .. }) => {
                return Err(MirrorError::Upstream(format!(
                    "download of {} ended early: {e}",
                    self.label
                )))
            }
            Err(WriteError::Mirror(e)) => return Err(e),
        };
        if declared >= MAX_PIECE {
            let secs = started.elapsed().as_secs_f64().max(0.001);
            tracing::info!(
                artifact = %self.label,
                bytes = declared,
                secs = format!("{secs:.1}"),
                mb_per_sec = format!("{:.1}", declared as f64 / secs / 1e6),
                "fetched; hashed while arriving"
            );
        }
        if let Err(reason) = self.check_digests(&quarantined) {
            return Ok(Err(reason));
        }
        let scan_started = Instant::now();
        let scan = match self.scan(&quarantined).await? {
            Ok(summary) => {
                self.env.metrics.scan_verdict(true);
                summary
            }
            Err(reason) => {
                self.env.metrics.scan_verdict(false);
                return Ok(Err(reason));
            }
        };
        self.env.record_scan(declared, scan_started.elapsed());
        let store = self.store.clone();
        // Size, digests and scan all passed: this is the verify step's verdict.
        let verified = super::Verified::new(quarantined);
        let digest = tokio::task::spawn_blocking(move || store.promote(verified))
            .await
            .map_err(|e| MirrorError::Task(e.to_string()))??;
        tracing::info!(artifact = %self.label, %digest, "promoted");
        Ok(Ok(Promoted { digest, scan }))
    }

    /// Runs `work` under the stall watchdog, which also samples the rate and logs progress. A
    /// fetch that stalls is dropped, which cancels every one of its connections.
    async fn watched(
        &self,
        work: impl std::future::Future<Output = Result<(), Halt>>,
        progress: &Progress,
    ) -> Result<(), Halt> {
        let stall = self.env.stall;
        let watchdog = async {
            let mut tick = tokio::time::interval(Duration::from_secs(1).min(stall / 2));
            let mut mark = (Instant::now(), 0u64);
            let mut logged = Instant::now();
            loop {
                tick.tick().await;
                progress.sample();
                let (now, done) = (Instant::now(), progress.done());
                if done.saturating_sub(mark.1) >= MIN_BYTES_PER_SEC * stall.as_secs().max(1) {
                    mark = (now, done);
                } else if now - mark.0 >= stall {
                    return Halt::Fail(MirrorError::Upstream(format!(
                        "upstream stalled: less than {MIN_BYTES_PER_SEC} bytes/s for {} s while fetching {}; the next request starts over",
                        stall.as_secs(),
                        self.label
                    )));
                }
                if now - logged >= LOG_EVERY {
                    logged = now;
                    let r = progress.report();
                    tracing::info!(
                        artifact = %self.label,
                        bytes = r.bytes,
                        total = r.total,
                        mb_per_sec = format!("{:.1}", r.rate_bytes_per_sec as f64 / 1e6),
                        eta_secs = r.eta_secs,
                        "fetching"
                    );
                }
            }
        };
        tokio::select! {
            r = work => r,
            halt = watchdog => {
                tracing::warn!(artifact = %self.label, "fetch stalled; cancelled");
                Err(halt)
            }
        }
    }

    /// Moves every byte into the writer: over one stream, or over up to `connections` ranged
    /// connections when the file is larger than a piece and the upstream honours `Range`.
    async fn transfer(&self, tx: &mpsc::Sender<Chunk>, progress: &Progress) -> Result<(), Halt> {
        let declared = self.size;
        if declared == 0 {
            // Nothing to fetch: the digest of no bytes is what the declared one is checked against.
            return Ok(());
        }
        let conns = self.env.connections as u64;
        if conns <= 1 || declared <= SINGLE_STREAM_MAX {
            return self.range(tx, progress, 0, declared, None, true).await;
        }
        let piece = (declared / (4 * conns)).clamp(MIN_PIECE, MAX_PIECE);
        // The first piece doubles as the probe: a 206 says the upstream honours `Range`.
        let probe = self
            .open_retrying(ByteRange {
                start: 0,
                end: Some(piece),
            })
            .await?;
        if !probe.partial {
            tracing::info!(artifact = %self.label, "upstream ignores Range; fetching over one stream");
            return self
                .range(tx, progress, 0, declared, Some(probe), true)
                .await;
        }
        let next = AtomicU64::new(piece);
        let n = conns.min(declared.div_ceil(piece)) as usize;
        tracing::debug!(artifact = %self.label, connections = n, piece, "parallel ranged fetch");
        let mut probe = Some(probe);
        let workers = (0..n).map(|_| self.worker(tx, progress, &next, piece, probe.take()));
        futures_util::future::try_join_all(workers).await?;
        Ok(())
    }

    /// One connection of a parallel fetch: takes the next piece until none is left. `first` is an
    /// open response for piece 0.
    async fn worker(
        &self,
        tx: &mpsc::Sender<Chunk>,
        progress: &Progress,
        next: &AtomicU64,
        piece: u64,
        mut first: Option<FileResponse>,
    ) -> Result<(), Halt> {
        loop {
            let start = match first {
                Some(_) => 0,
                None => next.fetch_add(piece, Ordering::Relaxed),
            };
            if start >= self.size {
                return Ok(());
            }
            let end = (start + piece).min(self.size);
            self.range(tx, progress, start, end, first.take(), false)
                .await?;
        }
    }

    /// Opens `range`, retrying transient failures (honouring `Retry-After`, at most 30 s).
    async fn open_retrying(&self, range: ByteRange) -> Result<FileResponse, Halt> {
        let mut last_error = String::new();
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(250 << attempt.min(5))).await;
            }
            match (self.open)(range).await {
                Ok(r) => return Ok(r),
                Err(OpenError::Permanent(m)) => return Err(Halt::Fail(MirrorError::Upstream(m))),
                Err(OpenError::Transient {
                    detail,
                    retry_after,
                }) => {
                    if let Some(s) = retry_after {
                        tokio::time::sleep(Duration::from_secs(s.min(30))).await;
                    }
                    last_error = detail;
                }
            }
        }
        Err(Halt::Fail(MirrorError::Upstream(format!(
            "download of {} failed after {MAX_ATTEMPTS} attempts: {last_error}",
            self.label
        ))))
    }

    /// Fetches bytes `start..end` into the writer at their offsets, resuming from where a broken
    /// connection stopped (so no byte is fetched twice unless its connection broke mid-way).
    /// `resp` is an already open response for this range. `whole` means one stream for the whole
    /// file: it asks without an end, and an upstream answering a resume with the whole file
    /// (ignoring `Range`) makes it start over.
    async fn range(
        &self,
        tx: &mpsc::Sender<Chunk>,
        progress: &Progress,
        start: u64,
        end: u64,
        mut resp: Option<FileResponse>,
        whole: bool,
    ) -> Result<(), Halt> {
        let declared = self.size;
        let mut offset = start;
        let mut attempts = 0u32;
        let mut last_error = String::new();
        while offset < end {
            let r = match resp.take() {
                Some(r) => r,
                None => {
                    if attempts >= MAX_ATTEMPTS {
                        return Err(Halt::Fail(MirrorError::Upstream(format!(
                            "download of {} failed after {attempts} attempts: {last_error}",
                            self.label
                        ))));
                    }
                    attempts += 1;
                    let range = ByteRange {
                        start: offset,
                        end: (!whole).then_some(end),
                    };
                    if attempts > 1 {
                        tokio::time::sleep(Duration::from_millis(250 << attempts.min(5))).await;
                    }
                    self.open_retrying(range).await?
                }
            };
            if !r.partial && (offset > 0 || !whole) {
                if !whole {
                    return Err(Halt::Fail(MirrorError::Upstream(format!(
                        "upstream stopped honouring Range while fetching {}",
                        self.label
                    ))));
                }
                progress.set(progress.done().saturating_sub(offset), declared);
                offset = 0;
                tx.send(Chunk::Restart)
                    .await
                    .map_err(|_| Halt::WriterGone)?;
            }
            let want_end = if r.partial { end } else { declared };
            if let Some(len) = r.response.content_length() {
                // Upstream trouble, not a verdict on bytes (none were taken): not sticky, so a
                // CDN that lied once does not poison the file; the next request starts over.
                if offset + len != want_end {
                    return Err(Halt::Fail(MirrorError::Upstream(format!(
                        "upstream Content-Length {} does not match the declared size {want_end};                          nothing was kept",
                        offset + len
                    ))));
                }
            }
            let mut body = r.response.bytes_stream();
            last_error.clear();
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(b) => {
                        let n = b.len() as u64;
                        if offset + n > want_end {
                            return Err(Halt::Refuse(format!(
                                "upstream sent more than the declared {declared} bytes"
                            )));
                        }
                        tx.send(Chunk::At(offset, b))
                            .await
                            .map_err(|_| Halt::WriterGone)?;
                        offset += n;
                        progress.add(n);
                        self.env.metrics.upstream_bytes(self.upstream, n);
                    }
                    Err(e) => {
                        last_error = crate::upstream::describe(&e);
                        break;
                    }
                }
            }
            if offset < end && last_error.is_empty() {
                last_error = "connection closed before the end of the range".into();
            }
        }
        Ok(())
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
                // The grade travels with the reason so that the review pages can say what a
                // finding means (docs/scanning.md) without re-scanning bytes that were discarded.
                Err(match (&report.verdict, report.worst()) {
                    (verifier::Verdict::Findings, Some(f)) => format!(
                        "{} (severity: {})",
                        report.summary(),
                        format!("{:?}", f.severity).to_lowercase()
                    ),
                    _ => report.summary(),
                })
            })
        })
        .await
        .map_err(|e| MirrorError::Task(e.to_string()))?
    }
}
