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
mod signed;

use std::sync::{Arc, Weak};

use verifier::Digest;

use crate::config::Config;
use crate::error::MirrorError;
use crate::flight::SingleFlight;
use crate::governance::Governance;
use crate::manifest::Manifest;
use crate::names::{RepoPath, Revision};
use crate::policy::Policy;
use crate::refusal::Refusal;
use crate::store::{FileRecord, Store};
use crate::typosquat::WellKnown;
use crate::upstream::hf::{Answer, HfUpstream};
use crate::upstream::oci::OciUpstream;

pub use hf::Snapshot;
pub(crate) use ollama::parse_manifest as manifest_layers;
pub use ollama::{BlobInfo, ManifestDoc};

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
    Failed(String),
    Busy(u64),
}

impl Fetched {
    /// A fetch that failed for reasons other than the bytes: not sticky, the next request retries.
    pub(crate) fn from_error(e: MirrorError, label: &str) -> Fetched {
        tracing::warn!(artifact = label, error = %e, "fetch failed");
        match e {
            MirrorError::UpstreamBusy { retry_after_secs } => Fetched::Busy(retry_after_secs),
            MirrorError::Upstream(m) => Fetched::Failed(m),
            _ => Fetched::Failed("internal error while fetching (see server log)".into()),
        }
    }
}

type FileKey = (String, Revision, RepoPath);
type MetaKey = String;

/// The engine.
pub struct Mirror {
    store: Arc<Store>,
    policy: Policy,
    hf: Arc<HfUpstream>,
    revision_ttl: u64,
    rt: tokio::runtime::Handle,
    files: SingleFlight<FileKey, Fetched>,
    refs: SingleFlight<MetaKey, Result<Answer<Revision>, String>>,
    listings: SingleFlight<MetaKey, Result<Answer<Arc<Manifest>>, String>>,
    oci: Arc<OciUpstream>,
    tag_ttl: u64,
    blob_flights: SingleFlight<Digest, Fetched>,
    manifest_flights: SingleFlight<MetaKey, Result<Lookup<ManifestDoc>, String>>,
    gov: Arc<Governance>,
    well_known: WellKnown,
    trust: crate::trust::Trust,
    signed_flights: SingleFlight<MetaKey, Result<signed::SignedState, String>>,
    /// The scanner's `[scan]` options and the audit log for its admissions.
    scanning: Arc<fetch::Scanning>,
    /// Itself, for background tasks that outlive a request (review-request prefetches).
    me: Weak<Mirror>,
}

impl Mirror {
    /// Opens the store and builds the upstream clients. Background work runs on `rt` (the engine
    /// runtime, separate from the HTTP workers' event loops).
    pub fn open(cfg: &Config, rt: tokio::runtime::Handle) -> Result<Arc<Mirror>, MirrorError> {
        let store = Arc::new(Store::open(&cfg.data_dir)?);
        let gov = Arc::new(Governance::open(cfg, store.clone())?);
        let policy = Policy::new(&cfg.policy)?;
        let hf = Arc::new(HfUpstream::new(&cfg.huggingface)?);
        let oci = Arc::new(OciUpstream::new(&cfg.ollama)?);
        let trust = crate::trust::Trust::new(&cfg.trust)?;
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
        Ok(Arc::new_cyclic(|me| Mirror {
            scanning,
            store,
            gov,
            well_known: WellKnown::shipped(),
            trust,
            signed_flights: SingleFlight::new(rt.clone()),
            me: me.clone(),
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
        }))
    }

    /// Records in the audit log that `client` downloaded `file` of `name` at `revision`. The
    /// append (an fsync) runs off the caller's thread.
    pub fn audit_download(
        &self,
        client: &str,
        name: String,
        revision: String,
        file: String,
        digest: Digest,
        approval: Option<signing::ApprovalId>,
    ) {
        let gov = self.gov.clone();
        let event = signing::AuditEvent::Download {
            client: client.to_owned(),
            name,
            revision,
            file,
            digest,
            approval,
        };
        self.rt.spawn_blocking(move || gov.audit(event));
    }

    /// The governance state (approvals, requests, audit log).
    pub fn governance(&self) -> &Arc<Governance> {
        &self.gov
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

    /// Maps a finished fetch to what callers see.
    fn settle(fetched: Fetched) -> Result<Lookup<FileState>, MirrorError> {
        match fetched {
            Fetched::Ready(rec) => Ok(Lookup::Found(FileState::Ready(rec))),
            Fetched::Refused(r) => Ok(Lookup::Refused(r)),
            Fetched::Failed(m) => Err(MirrorError::Upstream(m)),
            Fetched::Busy(s) => Err(MirrorError::UpstreamBusy {
                retry_after_secs: s,
            }),
        }
    }

    /// Opens a promoted blob for serving.
    pub async fn open_blob(&self, rec: &FileRecord) -> Result<std::fs::File, MirrorError> {
        let (store, digest) = (self.store.clone(), rec.digest);
        self.blocking(move || store.open_blob(&digest)).await
    }
}
