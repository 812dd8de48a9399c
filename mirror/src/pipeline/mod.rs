//! The pipeline: name → policy → revision → listing → fetch into quarantine (hashing as bytes
//! arrive) → verify against the listing → scan → promote → index. One task per artifact
//! (single-flight); only promoted blobs are ever handed to the protocol adapters.
//!
//! States of a file: Absent → Fetching → Quarantined → Verified → Ready, or → Refused(reason).
//! Refusals of bytes are sticky (recorded in the index); upstream trouble is not.

mod admit;
mod fetch;
mod hf;
mod ollama;
mod prepare;
mod scope;
mod signed;
mod verified;

use std::sync::{Arc, Weak};

use verifier::Digest;

use crate::config::Config;
use crate::error::MirrorError;
use crate::flight::{ProgressReport, SingleFlight};
use crate::governance::Governance;
use crate::manifest::Manifest;
use crate::names::{HfRepo, RepoId, RepoKind, RepoPath, Revision};
use crate::policy::Policy;
use crate::refusal::Refusal;
use crate::store::{FileRecord, Store};
use crate::typosquat::WellKnown;
use crate::upstream::hf::{Answer, HfUpstream};
use crate::upstream::oci::OciUpstream;

pub use hf::Snapshot;
pub(crate) use ollama::{layer_formats, parse_manifest as manifest_layers};
pub use ollama::{BlobInfo, ManifestDoc};
pub(crate) use verified::Verified;

/// The answer to a lookup: found, refused by Airlock, or absent upstream.
#[derive(Debug, Clone)]
pub enum Lookup<T> {
    /// Here it is.
    Found(T),
    /// Airlock says no.
    Refused(Refusal),
    /// The repository does not exist (upstream says so).
    RepoNotFound(String),
    /// The revision does not exist.
    RevisionNotFound(String),
    /// The path does not exist at this commit.
    EntryNotFound {
        /// The commit that was looked in.
        commit: Revision,
    },
}

/// Where a file stands.
#[derive(Debug, Clone)]
pub enum FileState {
    /// Verified and promoted; serve this blob.
    Ready(FileRecord),
    /// Being fetched or checked; come back in `retry_after` seconds.
    Pending {
        /// Seconds.
        retry_after: u64,
    },
}

/// Outcome of a fetch task, shared by every waiter.
#[derive(Debug, Clone)]
pub(crate) enum Fetched {
    Ready(FileRecord),
    Refused(Refusal),
    /// Not sticky: the next request retries. The error itself (not its text) so the protocol
    /// mapping points can keep internal detail from clients.
    Failed(Arc<MirrorError>),
    Busy(u64),
    /// The data directory is full: not sticky, retried once space is freed.
    NoSpace {
        needed: u64,
        free: u64,
    },
}

impl Fetched {
    /// A fetch that failed for reasons other than the bytes: not sticky, the next request retries.
    /// Internal failures are logged by the mapping point that answers a client, with the
    /// reference it gives; here only at debug (a fetch no client waits for is a prefetch, whose
    /// report carries the error).
    pub(crate) fn from_error(e: MirrorError, label: &str) -> Fetched {
        if e.is_internal() {
            tracing::debug!(artifact = label, error = %e, "fetch failed");
        } else {
            tracing::warn!(artifact = label, error = %e, "fetch failed");
        }
        match e {
            MirrorError::UpstreamBusy { retry_after_secs } => Fetched::Busy(retry_after_secs),
            MirrorError::InsufficientStorage { needed, free } => Fetched::NoSpace { needed, free },
            // The disk filled up mid-stream (other fetches took the room the pre-flight saw).
            MirrorError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                Fetched::NoSpace { needed: 0, free: 0 }
            }
            e => Fetched::Failed(Arc::new(e)),
        }
    }
}

/// The longest `Retry-After` ever given: bounds what one early, noisy rate sample can make a client
/// sleep (huggingface_hub sleeps whatever it is told, uncapped).
const MAX_RETRY_AFTER: u64 = 3600;

/// The `Retry-After` for a fetch still running: its measured ETA (remaining bytes ÷ recent rate +
/// the estimated scan and promote time), so one client sleep can cover the whole fetch. With no
/// byte to measure yet, as long as the fetch has already run: waits grow with a slow upstream
/// instead of being a fixed guess.
pub(crate) fn retry_after(eta_secs: Option<u64>, elapsed_secs: u64) -> u64 {
    eta_secs.unwrap_or(elapsed_secs).clamp(1, MAX_RETRY_AFTER)
}

type FileKey = (String, Revision, RepoPath);
type MetaKey = String;

/// How long an upstream "no such repo / revision" answer is believed. Short: a branch pushed a
/// moment later must appear soon; long enough that a client asking for the same missing revision
/// in a loop costs one upstream request per period, not one per request.
const MISSING_TTL: std::time::Duration = std::time::Duration::from_secs(30);
/// Most (repo, revision) misses remembered; a flood of distinct misses evicts the oldest.
const MISSING_CAPACITY: u64 = 10_000;

/// A remembered upstream miss.
#[derive(Debug, Clone)]
pub(crate) enum Missing {
    Repo(String),
    Revision(String),
}

/// The engine.
pub struct Mirror {
    store: Arc<Store>,
    policy: Policy,
    hf: Arc<HfUpstream>,
    revision_ttl: u64,
    rt: tokio::runtime::Handle,
    files: SingleFlight<FileKey, Fetched>,
    refs: SingleFlight<MetaKey, Result<Answer<Revision>, Arc<MirrorError>>>,
    listings: SingleFlight<MetaKey, Result<Answer<Arc<Manifest>>, Arc<MirrorError>>>,
    oci: Arc<OciUpstream>,
    tag_ttl: u64,
    blob_flights: SingleFlight<Digest, Fetched>,
    manifest_flights: SingleFlight<MetaKey, Result<Lookup<ManifestDoc>, Arc<MirrorError>>>,
    gov: Arc<Governance>,
    well_known: WellKnown,
    trust: crate::trust::Trust,
    signed_flights: SingleFlight<MetaKey, Result<signed::SignedState, Arc<MirrorError>>>,
    /// Recent upstream misses per (repo, revision), so repeated asks for a missing revision do not
    /// each cost an authenticated upstream request.
    missing: moka::sync::Cache<MetaKey, Missing>,
    /// Never contact an upstream (an air-gapped mirror): every place below that would go upstream
    /// answers [`Refusal::Offline`] instead, at once.
    offline: bool,
    /// The scanner's `[scan]` options and the audit log for its admissions.
    scanning: Arc<fetch::Scanning>,
    /// Itself, for background tasks that outlive a request (review-request prefetches).
    me: Weak<Mirror>,
    fetch_env: Arc<fetch::FetchEnv>,
    /// What `/metrics` shows of the engine.
    metrics: Arc<crate::metrics::Metrics>,
    /// OCI blobs already checked against a layer media type's format (see `recheck_format`).
    formats_checked: ollama::FormatsChecked,
    /// Decoded listings of recently served commits. A commit's listing never changes, so this
    /// cannot go stale; it saves every request a blocking hop to read and decode it from sled.
    listings_hot: moka::sync::Cache<MetaKey, Arc<Manifest>>,
    /// Recent branch/tag resolutions as stored (commit, resolved_at), judged by the same TTL as
    /// the stored record: a warm request needs no blocking hop for it.
    refs_hot: moka::sync::Cache<MetaKey, crate::store::RefRecord>,
}

impl Mirror {
    /// Opens the store and builds the upstream clients. Background work runs on `rt` (the engine
    /// runtime, separate from the HTTP workers' event loops).
    pub fn open(cfg: &Config, rt: tokio::runtime::Handle) -> Result<Arc<Mirror>, MirrorError> {
        let store = Arc::new(Store::open_with(&cfg.data_dir, &cfg.store)?);
        let gov = Arc::new(Governance::open(cfg, store.clone())?);
        let metrics = Arc::new(crate::metrics::Metrics::new(gov.appended()));
        let policy = Policy::new(&cfg.policy)?;
        let offline = cfg.is_offline();
        let (mut hf_cfg, mut oci_cfg) = (cfg.huggingface.clone(), cfg.ollama.clone());
        // An offline mirror may configure no upstream at all; its clients are built (the types
        // want one) but never called, because `offline` gates every upstream request.
        for upstream in [&mut hf_cfg.upstream, &mut oci_cfg.upstream] {
            if offline && upstream.is_empty() {
                *upstream = "http://127.0.0.1:9".into();
            }
        }
        let hf = Arc::new(HfUpstream::new(&hf_cfg, &cfg.upstream, metrics.clone())?);
        let oci = Arc::new(OciUpstream::new(&oci_cfg, &cfg.upstream, metrics.clone())?);
        let trust = crate::trust::Trust::new(&cfg.trust)?;
        // Download windows close on a timer, so a count is written even if no request follows.
        let window = cfg.governance.download_audit_window_secs.unwrap_or(60);
        if window > 0 {
            let (gov, rt2) = (Arc::downgrade(&gov), rt.clone());
            rt.spawn(async move {
                let mut tick =
                    tokio::time::interval(std::time::Duration::from_secs(window.div_ceil(4)));
                loop {
                    tick.tick().await;
                    let Some(gov) = gov.upgrade() else { break };
                    let _ = rt2
                        .spawn_blocking(move || gov.close_download_windows())
                        .await;
                }
            });
        }
        let mut options = verifier::ScanOptions::new();
        for g in &cfg.scan.allow_globals {
            options = options
                .allow_global(g)
                .map_err(|e| MirrorError::Config(format!("[scan] allow_globals: {e}")))?;
        }
        let scanning = Arc::new(fetch::Scanning {
            options,
            gov: gov.clone(),
        });
        let mirror = Arc::new_cyclic(|me| Mirror {
            scanning,
            store,
            gov,
            well_known: WellKnown::shipped(),
            trust,
            signed_flights: SingleFlight::new(rt.clone()),
            missing: moka::sync::Cache::builder()
                .max_capacity(MISSING_CAPACITY)
                .time_to_live(MISSING_TTL)
                .build(),
            offline,
            me: me.clone(),
            fetch_env: Arc::new(fetch::FetchEnv::new(&cfg.fetch, metrics.clone())),
            metrics,
            formats_checked: moka::sync::Cache::new(100_000),
            // Weighed by entries, so a few huge listings cannot hold unbounded memory.
            listings_hot: moka::sync::Cache::builder()
                .weigher(|_, m: &Arc<Manifest>| m.entries.len().try_into().unwrap_or(u32::MAX))
                .max_capacity(200_000)
                .build(),
            refs_hot: moka::sync::Cache::new(10_000),
            policy,
            hf,
            revision_ttl: cfg.huggingface.revision_ttl_secs,
            files: SingleFlight::new(rt.clone()),
            refs: SingleFlight::new(rt.clone()),
            listings: SingleFlight::new(rt.clone()),
            oci,
            tag_ttl: cfg.ollama.tag_ttl_secs,
            blob_flights: SingleFlight::new(rt.clone()),
            manifest_flights: SingleFlight::new(rt.clone()),
            rt,
        });
        // The cache limit is kept by a pass whenever promotions have pushed the store over it.
        if let Some(max) = cfg.store.max_bytes {
            let (me, store, rt2) = (
                Arc::downgrade(&mirror),
                mirror.store.clone(),
                mirror.rt.clone(),
            );
            mirror.rt.spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
                loop {
                    tick.tick().await;
                    if store.blob_bytes() <= max {
                        continue;
                    }
                    let Some(mirror) = me.upgrade() else { break };
                    let pass = rt2.spawn_blocking(move || mirror.gc(max, false)).await;
                    match pass {
                        Ok(Ok(r)) if !r.evicted.is_empty() => tracing::info!(
                            evicted = r.evicted.len(),
                            before = r.before,
                            after = r.after,
                            "cache over [store] max_bytes: evicted least recently served blobs"
                        ),
                        Ok(Ok(r)) if r.after > max => tracing::warn!(
                            after = r.after,
                            max,
                            needed = r.kept_needed,
                            "cache over [store] max_bytes, but what is left is approved or pinned"
                        ),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::error!(error = %e, "cache eviction failed"),
                        Err(e) => tracing::error!(error = %e, "cache eviction task failed"),
                    }
                }
            });
        }
        Ok(mirror)
    }

    /// Records in the audit log that `client` downloaded `file` of `name` at `revision`; repeats
    /// within the download window are counted, not written one by one. The append (an fsync)
    /// runs off the caller's thread.
    pub fn audit_download(
        &self,
        client: &crate::Caller,
        name: String,
        revision: String,
        file: String,
        digest: Digest,
        approval: Option<signing::ApprovalId>,
    ) {
        let gov = self.gov.clone();
        let who = client.budget_key();
        let event = signing::AuditEvent::Download {
            client: client.to_string(),
            name,
            revision,
            file,
            digest,
            approval,
        };
        // Repeats within a window are only counted: no blocking hop unless there is a line to
        // append (its fsync runs on a blocking thread).
        let due = gov.fold_download(&who, event);
        if !due.is_empty() {
            self.rt.spawn_blocking(move || {
                for e in due {
                    gov.audit(e);
                }
            });
        }
    }

    /// Writes what is pending in the audit log (open download windows' counts). Blocking; call
    /// once the server has stopped taking requests.
    pub fn flush_audit(&self) {
        self.gov.close_all_download_windows();
    }

    /// Evicts least-recently-served blobs until the store holds at most `target` bytes. What an
    /// approval or a config pin needs stays unless `force`. Blocking.
    pub fn gc(&self, target: u64, force: bool) -> Result<crate::store::EvictReport, MirrorError> {
        let mut needed = self.gov.needed_blobs();
        let (commits, manifests) = self.policy.pins();
        for commit in &commits {
            needed.extend(self.store.file_digests_at(commit)?);
        }
        for m in manifests {
            needed.insert(m);
            if let Ok(bytes) = self
                .store
                .read_small_blob(&m, crate::upstream::oci::MAX_MANIFEST as u64)
            {
                if let Ok(layers) = ollama::parse_manifest(&bytes) {
                    needed.extend(layers.into_iter().map(|(d, _)| d));
                }
            }
        }
        self.store.evict_to(target, &needed, force)
    }

    /// The governance state (approvals, requests, audit log).
    pub fn governance(&self) -> &Arc<Governance> {
        &self.gov
    }

    /// Every artifact fetch in flight (Hugging Face files and OCI blobs), with its progress.
    pub fn fetches(&self) -> Vec<ProgressReport> {
        let mut all: Vec<ProgressReport> = self
            .files
            .in_flight()
            .into_iter()
            .chain(self.blob_flights.in_flight())
            .map(|p| p.report())
            .collect();
        all.sort_by(|a, b| a.artifact.cmp(&b.artifact));
        all
    }

    /// The engine's metrics (the front doors count refusals into them).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        &self.metrics
    }

    /// Appends the engine's metrics to `out` in the OpenMetrics text format, without the closing
    /// `# EOF`. Cheap (no disk work): the store size is a running count.
    pub fn encode_metrics(&self, out: &mut String) {
        let waiting = self.files.waiting() + self.blob_flights.waiting();
        self.metrics.encode(out, self.store.blob_bytes(), waiting);
    }

    /// The readiness checks, each with its outcome: `store` (quarantine takes a file), `audit`
    /// (the audit log takes entries), `index` (the index answers). Blocking (a small write and
    /// fsync, an open): run off the event loop.
    pub fn readiness(&self) -> Vec<(&'static str, Result<(), String>)> {
        vec![
            ("store", self.store.check_writable()),
            ("audit", self.gov.check_audit()),
            ("index", self.store.check_index()),
        ]
    }

    /// The `[[trust]]` pattern whose rule requires a signature for the HF repo `name`
    /// (`org/repo`, `datasets/org/repo`), if one does (for the review pages).
    pub fn signature_rule(&self, name: &str) -> Option<String> {
        let (kind, id) = match name.strip_prefix("datasets/") {
            Some(rest) => (RepoKind::Dataset, rest),
            None => (RepoKind::Model, name),
        };
        let repo = HfRepo {
            kind,
            id: RepoId::parse(id).ok()?,
        };
        self.trust
            .rule_for(&repo)
            .filter(|r| r.requirement.is_some())
            .map(|r| r.pattern.clone())
    }

    /// The store (for serving promoted blobs).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Runs blocking work (disk, hashing, scanning) off the async workers.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T, MirrorError> + Send + 'static,
    ) -> Result<T, MirrorError> {
        self.rt
            .spawn_blocking(f)
            .await
            .map_err(|e| MirrorError::Task(e.to_string()))?
    }

    /// Runs index reads (sled reads and decoding) that need the engine itself off the async
    /// workers.
    async fn off_loop<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Mirror) -> Result<T, MirrorError> + Send + 'static,
    ) -> Result<T, MirrorError> {
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| MirrorError::Task("mirror is shutting down".into()))?;
        self.blocking(move || f(&me)).await
    }

    /// Maps a finished fetch to what callers see.
    fn settle(fetched: Fetched) -> Result<Lookup<FileState>, MirrorError> {
        match fetched {
            Fetched::Ready(rec) => Ok(Lookup::Found(FileState::Ready(rec))),
            Fetched::Refused(r) => Ok(Lookup::Refused(r)),
            Fetched::Failed(e) => Err(MirrorError::Shared(e)),
            Fetched::NoSpace { needed, free } => {
                Err(MirrorError::InsufficientStorage { needed, free })
            }
            Fetched::Busy(s) => Err(MirrorError::UpstreamBusy {
                retry_after_secs: s,
            }),
        }
    }

    /// Opens a small promoted blob for serving and, when it is a local file, reads it whole in
    /// the same blocking hop (open, note the use for the cache's LRU, read): for a small file a
    /// streaming task costs more than the bytes. An object-store blob comes back opened for a
    /// ranged read. A local read must be exactly the recorded size.
    pub async fn open_small_blob(&self, rec: &FileRecord) -> Result<SmallBlob, MirrorError> {
        use std::io::Read;
        let (store, digest, size) = (self.store.clone(), rec.digest, rec.size);
        self.blocking(move || {
            let file = match store.open_blob(&digest)? {
                crate::cas::Blob::File(file) => file,
                remote => return Ok(SmallBlob::Opened(remote)),
            };
            store.touch(&file);
            let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
            let read = (&file).take(size.saturating_add(1)).read_to_end(&mut bytes);
            match read {
                Ok(_) if bytes.len() as u64 == size => Ok(SmallBlob::Whole(bytes)),
                Ok(_) => Err(MirrorError::Blob(crate::cas::CasError::SizeMismatch {
                    digest,
                    expected: size,
                    actual: bytes.len() as u64,
                })),
                // The blob's own path is cas's to know; the digest names it in the log.
                Err(e) => Err(MirrorError::Blob(crate::cas::CasError::Io {
                    path: format!("blob {digest}").into(),
                    source: e,
                })),
            }
        })
        .await
    }

    /// Opens a promoted blob for serving: a local file (marked as recently served, for
    /// eviction order) or an object-store blob for ranged reads.
    pub async fn open_blob(&self, rec: &FileRecord) -> Result<crate::cas::Blob, MirrorError> {
        let (store, digest) = (self.store.clone(), rec.digest);
        self.blocking(move || {
            let blob = store.open_blob(&digest)?;
            if let crate::cas::Blob::File(file) = &blob {
                store.touch(file);
            }
            Ok(blob)
        })
        .await
    }
}

/// A small blob opened for serving ([`Mirror::open_small_blob`]).
pub enum SmallBlob {
    /// Read whole from the local store.
    Whole(Vec<u8>),
    /// Held by an object store: opened for a ranged read.
    Opened(crate::cas::Blob),
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_after_follows_the_eta_not_a_fixed_number() {
        assert_eq!(super::retry_after(Some(143), 7), 143);
        assert_eq!(super::retry_after(Some(0), 7), 1);
        assert_eq!(
            super::retry_after(None, 7),
            7,
            "no rate yet: as long as the fetch ran"
        );
        assert_eq!(super::retry_after(Some(1 << 30), 7), super::MAX_RETRY_AFTER);
    }
}
