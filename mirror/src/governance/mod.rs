//! Governance: signed approval records decide which exact versions are served; revocations stop
//! them at once; unapproved names become review requests; every decision lands in the signed,
//! hash-chained audit log. The records and the log are files (the sources of truth); this module
//! keeps an in-memory index over the records and the requests in the store.

mod budget;
mod downloads;
pub(crate) mod keyring;
mod licence;
mod requests;
pub mod rotate;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use signing::{
    ApprovalId, ApprovalRecord, AuditEvent, AuditLog, KeyPair, PublicKey, RevocationRecord,
    SignedApproval, SignedRevocation, Source, Timestamp,
};

use crate::config::{Config, Secret};
use crate::error::MirrorError;
use crate::refusal::Refusal;
use crate::store::Store;

pub use licence::{licence_of_model_card, licence_of_text};
pub use requests::{Charge, Prepared, PreparedFile, RefusedFile, RequestRecord, RequestStatus};

/// One loaded approval: verified against the trusted keys, with its revocation if any.
#[derive(Debug, Clone)]
pub struct Approval {
    /// Its id.
    pub id: ApprovalId,
    /// The record as signed (for export).
    pub signed: SignedApproval,
    /// The verified record.
    pub record: ApprovalRecord,
    /// The revocation, if it was revoked.
    pub revoked: Option<RevocationRecord>,
}

impl Approval {
    /// Why this approval no longer covers anything: revoked (with who and why) or expired.
    fn unusable(&self, name: &str) -> Refusal {
        match &self.revoked {
            Some(r) => Refusal::Revoked {
                name: name.to_owned(),
                approval: self.id.to_string(),
                by: r.revoked_by.clone(),
                reason: r.reason.clone(),
            },
            None => Refusal::Expired {
                name: name.to_owned(),
                approval: self.id.to_string(),
            },
        }
    }
}

/// What the approvals say about a name and revision.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// No approval mentions the name: config rules decide.
    NoApprovals,
    /// This approval covers the asked version.
    Approved(Arc<Approval>),
    /// Approvals exist but none covers it.
    Refused(Refusal),
}

#[derive(Default)]
struct Index {
    by_name: HashMap<(Source, String), Vec<Arc<Approval>>>,
    rejected: Vec<(PathBuf, String)>,
    /// Approvals that parse but whose signer no longer counts (a key removed from
    /// `[governance] keys`, or revoked before the record's time): (id, why), per name. They cover
    /// nothing; they only let the refusal say why.
    untrusted: HashMap<(Source, String), Vec<(String, String)>>,
}

impl Index {
    /// The refusal for a name whose only approvals no longer count, if that is the case.
    fn untrusted(&self, source: Source, name: &str) -> Verdict {
        match self
            .untrusted
            .get(&(source, name.to_ascii_lowercase()))
            .and_then(|v| v.last())
        {
            Some((approval, why)) => Verdict::Refused(Refusal::Untrusted {
                name: name.to_owned(),
                approval: approval.clone(),
                why: why.clone(),
            }),
            None => Verdict::NoApprovals,
        }
    }

    /// Notes a record file rejected for its signer under the name it states. The file was read
    /// and parsed once already; it is read again only on this (rare, logged) path, bounded.
    fn note_untrusted(&mut self, path: &std::path::Path, why: String) {
        let parsed = std::fs::File::open(path).ok().and_then(|f| {
            use std::io::Read;
            let mut bytes = Vec::new();
            f.take(16 << 20).read_to_end(&mut bytes).ok()?;
            SignedApproval::from_json(&bytes).ok()
        });
        if let Some(a) = parsed {
            if let Ok(id) = a.id() {
                self.untrusted
                    .entry((a.record().source, a.record().name.to_ascii_lowercase()))
                    .or_default()
                    .push((id.to_string(), why));
            }
        }
    }

    /// Rejects a verified approval whose key was revoked before it was signed.
    fn reject_untrusted(&mut self, dir: &std::path::Path, a: &SignedApproval, why: String) {
        let path = dir.join(a.file_name().unwrap_or_default());
        tracing::error!(path = %path.display(), error = %why, "approval record rejected");
        if let Ok(id) = a.id() {
            self.untrusted
                .entry((a.record().source, a.record().name.to_ascii_lowercase()))
                .or_default()
                .push((id.to_string(), why.clone()));
        }
        self.rejected.push((path, why));
    }
}

/// Why a governance operation failed (a bad record from an admin is a client error).
#[derive(Debug, thiserror::Error)]
pub enum GovError {
    /// The record does not verify, or is malformed.
    #[error("record rejected: {0}")]
    Rejected(String),
    /// No such request or approval.
    #[error("{0} not found")]
    NotFound(String),
    /// Storage failed.
    #[error(transparent)]
    Mirror(#[from] MirrorError),
}

/// The governance state of one mirror.
pub struct Governance {
    keys: keyring::Keyring,
    approvals_dir: PathBuf,
    data_dir: PathBuf,
    index: RwLock<Index>,
    audit: AuditLog,
    store: Arc<Store>,
    licenses: Vec<String>,
    public_url: String,
    admin_token: Option<Secret>,
    prefetch_requests: bool,
    prefetch_max_bytes: u64,
    downloads: downloads::DownloadFold,
    budget: budget::Budget,
    /// Entries appended (for `/metrics`).
    appended: prometheus_client::metrics::counter::Counter,
    /// The last append failed (for `/readyz`): evidence is being lost.
    append_failing: std::sync::atomic::AtomicBool,
}

pub(crate) fn signing_err(e: signing::SigningError) -> MirrorError {
    MirrorError::Config(e.to_string())
}

/// Now, as the signing crate's timestamp.
pub(crate) fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
        // A clock outside years 0000-9999 is broken; the epoch is then the least wrong answer.
        // `from_unix(0)` is in range by construction, so the expect cannot fire.
        .or_else(|_| Timestamp::from_unix(0))
        .expect("the unix epoch is a valid timestamp")
}

impl Governance {
    /// Opens the governance state under `data_dir`: loads the trusted keys, the mirror's own key
    /// (generated on first start), the audit log and the approval records.
    pub fn open(cfg: &Config, store: Arc<Store>) -> Result<Governance, MirrorError> {
        let data_dir = &cfg.data_dir;
        let keys = keyring::Keyring::load(&cfg.governance.keys, &cfg.governance.revoked_keys)?;
        let key = mirror_key(data_dir)?;
        let audit = AuditLog::open(&data_dir.join("audit.log"), key).map_err(signing_err)?;
        let approvals_dir = data_dir.join("approvals");
        std::fs::create_dir_all(&approvals_dir).map_err(MirrorError::io(&approvals_dir))?;
        let public_url = cfg
            .governance
            .public_url
            .clone()
            // Without a public_url the review link names the listener, in the scheme it speaks.
            .unwrap_or_else(|| {
                let scheme = if cfg.tls.files().is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", cfg.listen)
            })
            .trim_end_matches('/')
            .to_owned();
        let request_records = store.requests.len();
        let gov = Governance {
            keys,
            approvals_dir,
            data_dir: data_dir.to_owned(),
            index: RwLock::new(Index::default()),
            audit,
            store,
            licenses: cfg
                .policy
                .licenses
                .iter()
                .map(|l| l.to_ascii_lowercase())
                .collect(),
            public_url,
            admin_token: cfg.governance.admin_token.clone(),
            prefetch_requests: cfg.governance.prefetch_requests.unwrap_or(true),
            prefetch_max_bytes: cfg.governance.prefetch_max_bytes.unwrap_or(2 << 30),
            budget: budget::Budget::new(
                budget::Limits {
                    per_client_hour: cfg.governance.requests_per_client_hour.unwrap_or(100),
                    max_requests: cfg.governance.max_requests.unwrap_or(10_000),
                    prefetch_quota: cfg.governance.prefetch_quota_bytes.unwrap_or(20 << 30),
                },
                request_records,
            ),
            downloads: downloads::DownloadFold::new(std::time::Duration::from_secs(
                cfg.governance.download_audit_window_secs.unwrap_or(60),
            )),
            appended: Default::default(),
            append_failing: Default::default(),
        };
        gov.reload()?;
        Ok(gov)
    }

    /// (Re)loads every record in `approvals/`. Records that do not verify are rejected loudly
    /// (logged, listed by the admin API) and cover nothing.
    pub fn reload(&self) -> Result<(usize, usize), MirrorError> {
        let loading = self.keys.for_loading();
        let (approvals, bad) =
            signing::load_dir(&self.approvals_dir, &loading).map_err(signing_err)?;
        let (revocations, bad_rev) =
            signing::load_revocations(&self.approvals_dir, &loading).map_err(signing_err)?;
        let mut index = Index::default();
        for (path, e) in bad {
            if let signing::SigningError::UnknownSigner { .. } = e {
                index.note_untrusted(&path, e.to_string());
            }
            tracing::error!(path = %path.display(), error = %e, "approval record rejected");
            index.rejected.push((path, e.to_string()));
        }
        for (path, e) in bad_rev {
            tracing::error!(path = %path.display(), error = %e, "approval record rejected");
            index.rejected.push((path, e.to_string()));
        }
        // Signed by a revoked key at or after its revocation: rejected like an unknown signer.
        let approvals: Vec<_> = approvals
            .into_iter()
            .filter(|a| {
                let verdict = self.keys.check(a.signed_by(), a.record().approved_at);
                verdict
                    .map_err(|why| index.reject_untrusted(&self.approvals_dir, a, why))
                    .is_ok()
            })
            .collect();
        let revocations: Vec<_> = revocations
            .into_iter()
            .filter(|r| match self.keys.check(r.signed_by(), r.record().revoked_at) {
                Ok(()) => true,
                Err(why) => {
                    let path = self.approvals_dir.join(r.file_name().unwrap_or_default());
                    tracing::error!(path = %path.display(), error = %why, "revocation record rejected");
                    index.rejected.push((path, why));
                    false
                }
            })
            .collect();
        let mut revoked: HashMap<String, RevocationRecord> = HashMap::new();
        for r in &revocations {
            let rec = r.record().clone();
            revoked.insert(rec.approval.as_str().to_owned(), rec);
        }
        let n = approvals.len();
        for signed in approvals {
            let record = signed.record().clone();
            let id = match signed.id() {
                Ok(id) => id,
                Err(e) => {
                    index
                        .rejected
                        .push((self.approvals_dir.clone(), e.to_string()));
                    continue;
                }
            };
            let key = (record.source, record.name.to_ascii_lowercase());
            let approval = Approval {
                revoked: revoked.get(id.as_str()).cloned(),
                id,
                signed,
                record,
            };
            index
                .by_name
                .entry(key)
                .or_default()
                .push(Arc::new(approval));
        }
        let rejected = index.rejected.len();
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = index;
        tracing::info!(approvals = n, rejected, "approvals loaded");
        Ok((n, rejected))
    }

    /// What the approvals say about `name` at `asked` (a commit / digest, or a branch / tag name).
    pub fn decide(&self, source: Source, name: &str, asked: &str) -> Verdict {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let Some(all) = index.by_name.get(&(source, name.to_ascii_lowercase())) else {
            return index.untrusted(source, name);
        };
        let now = now();
        let usable = |a: &&Arc<Approval>| a.revoked.is_none() && !a.record.is_expired(now);
        let asked_is_version = asked.len() == 40 && asked.bytes().all(|b| b.is_ascii_hexdigit())
            || asked.starts_with("sha256:");
        let matching: Vec<&Arc<Approval>> = all
            .iter()
            .filter(|a| {
                if asked_is_version {
                    a.record.revision.eq_ignore_ascii_case(asked)
                } else {
                    a.record.revision_name.as_deref() == Some(asked)
                }
            })
            .collect();
        // The newest usable approval for the asked version or name wins.
        if let Some(a) = matching
            .iter()
            .copied()
            .filter(usable)
            .max_by_key(|a| a.record.approved_at)
        {
            return Verdict::Approved(a.clone());
        }
        // Asking for `main`/`latest` when approvals name no branch: the newest usable approval.
        if !asked_is_version && matching.is_empty() && matches!(asked, "main" | "latest") {
            if let Some(a) = all
                .iter()
                .filter(usable)
                .max_by_key(|a| a.record.approved_at)
            {
                return Verdict::Approved(a.clone());
            }
        }
        let newest = matching
            .iter()
            .copied()
            .max_by_key(|a| a.record.approved_at);
        Verdict::Refused(match newest {
            Some(a) => a.unusable(name),
            None => {
                let approved: Vec<String> = all
                    .iter()
                    .filter(usable)
                    .map(|a| match &a.record.revision_name {
                        Some(n) => format!("{n} = {}", a.record.revision),
                        None => a.record.revision.clone(),
                    })
                    .collect();
                // Every approval revoked: say so, with the newest revocation's reason.
                match all
                    .iter()
                    .filter(|a| a.revoked.is_some())
                    .max_by_key(|a| a.record.approved_at)
                {
                    Some(a) if approved.is_empty() => a.unusable(name),
                    _ => Refusal::RevisionNotApproved {
                        name: name.to_owned(),
                        asked: asked.to_owned(),
                        approved: if approved.is_empty() {
                            "none".into()
                        } else {
                            approved.join(", ")
                        },
                    },
                }
            }
        })
    }

    /// Whether a blob (an Ollama layer, by digest) of `name` is covered: by a usable approval
    /// that pins it, refused if approvals exist but none usable pins it, or no approvals at all.
    pub fn blob_verdict(&self, source: Source, name: &str, digest: &verifier::Digest) -> Verdict {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let Some(all) = index.by_name.get(&(source, name.to_ascii_lowercase())) else {
            return index.untrusted(source, name);
        };
        let now = now();
        let pins = |a: &&Arc<Approval>| {
            a.record.files.iter().any(|f| f.sha256 == *digest)
                || a.record.revision == digest.to_string()
        };
        if let Some(a) = all
            .iter()
            .filter(pins)
            .find(|a| a.revoked.is_none() && !a.record.is_expired(now))
        {
            return Verdict::Approved(a.clone());
        }
        Verdict::Refused(
            match all.iter().filter(pins).max_by_key(|a| a.record.approved_at) {
                Some(a) => a.unusable(name),
                None => Refusal::RevisionNotApproved {
                    name: name.to_owned(),
                    asked: digest.to_string(),
                    approved: "no approved manifest lists this blob".into(),
                },
            },
        )
    }

    /// Every blob a usable (unrevoked, unexpired) approval pins: its files, and for Ollama its
    /// manifest. Eviction keeps these.
    pub fn needed_blobs(&self) -> std::collections::HashSet<verifier::Digest> {
        let now = now();
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let mut out = std::collections::HashSet::new();
        for a in index.by_name.values().flatten() {
            if a.revoked.is_some() || a.record.is_expired(now) {
                continue;
            }
            out.extend(a.record.files.iter().map(|f| f.sha256));
            if let Ok(d) = a.record.revision.parse::<verifier::Digest>() {
                out.insert(d);
            }
        }
        out
    }

    /// Names with at least one usable approval (for typosquat checks).
    pub fn approved_names(&self, source: Source) -> Vec<String> {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        index
            .by_name
            .iter()
            .filter(|((s, _), v)| *s == source && v.iter().any(|a| a.revoked.is_none()))
            .filter_map(|(_, v)| v.first().map(|a| a.record.name.clone()))
            .collect()
    }

    /// Appends to the audit log. A failure is logged, not returned: the log is evidence, and a
    /// broken disk must not stop serving verified bytes.
    pub fn audit(&self, event: AuditEvent) {
        use std::sync::atomic::Ordering;
        match self.audit.append(&event, now()) {
            Ok(_) => {
                self.appended.inc();
                self.append_failing.store(false, Ordering::Relaxed);
            }
            Err(e) => {
                self.append_failing.store(true, Ordering::Relaxed);
                tracing::error!(error = %e, "audit log append failed");
            }
        }
    }

    /// The counter of audit appends (registered by [`crate::metrics::Metrics`]).
    pub(crate) fn appended(&self) -> prometheus_client::metrics::counter::Counter {
        self.appended.clone()
    }

    /// Whether the audit log can take entries: the last append did not fail, and the file still
    /// opens for appending (which a read-only or vanished data directory refuses). Blocking.
    pub fn check_audit(&self) -> Result<(), String> {
        if self
            .append_failing
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err("the last audit log append failed (see the server log)".into());
        }
        let path = self.audit.path();
        std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|e| {
                format!(
                    "audit log {} does not open for appending: {e}",
                    path.display()
                )
            })
    }

    /// What anonymous clients may still make the mirror do (review requests, prefetches).
    pub(crate) fn budget(&self) -> &budget::Budget {
        &self.budget
    }

    /// Audits a download, folding repeats within the configured window (see
    /// [`downloads`](self::downloads)). Blocking (an fsync when an entry is written).
    /// `who` is the client's budget key ([`crate::Caller::budget_key`]).
    pub fn audit_download(&self, who: &str, event: AuditEvent) {
        for e in self.fold_download(who, event) {
            self.audit(e);
        }
    }

    /// Folds a download into its open window (memory only, not blocking) and returns the
    /// entries that must be written now (a window's first download, or ones that closed); the
    /// caller appends them off the event loop, and only when there are any.
    /// `who` is the client's budget key.
    pub fn fold_download(&self, who: &str, event: AuditEvent) -> Vec<AuditEvent> {
        self.downloads
            .record(who, event, now(), std::time::Instant::now())
    }

    /// Writes the counts of download windows that have closed. Blocking; run periodically.
    pub fn close_download_windows(&self) {
        for e in self.downloads.close_expired(std::time::Instant::now()) {
            self.audit(e);
        }
    }

    /// Writes the counts of every open download window (at shutdown). Blocking.
    pub fn close_all_download_windows(&self) {
        for e in self.downloads.close_all() {
            self.audit(e);
        }
    }

    /// Every loaded approval, revoked or not.
    pub fn approvals(&self) -> Vec<Arc<Approval>> {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<Arc<Approval>> = index.by_name.values().flatten().cloned().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Every revocation record that verifies against the trusted keys, as signed.
    pub(crate) fn signed_revocations(&self) -> Result<Vec<SignedRevocation>, MirrorError> {
        let (good, _) = signing::load_revocations(&self.approvals_dir, &self.keys.for_loading())
            .map_err(signing_err)?;
        Ok(good)
    }

    /// The data directory (for the mirror's own key).
    pub(crate) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Path of the audit log.
    pub fn audit_path(&self) -> &Path {
        self.audit.path()
    }

    /// The admin token, if the admin API is enabled.
    pub fn admin_token(&self) -> Option<&Secret> {
        self.admin_token.as_ref()
    }

    /// Base URL shown in refusal messages.
    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// Whether requested versions are fetched and scanned in the background.
    pub fn prefetch_requests(&self) -> bool {
        self.prefetch_requests
    }

    /// Largest version fetched in the background for a review request.
    pub fn prefetch_max_bytes(&self) -> u64 {
        self.prefetch_max_bytes
    }

    /// Whether `license` may be approved without an override.
    pub fn licence_allowed(&self, license: Option<&str>) -> bool {
        self.licenses.is_empty()
            || license.is_some_and(|l| self.licenses.contains(&l.to_ascii_lowercase()))
    }

    /// Verifies a signed approval sent by an admin, writes it to `approvals/` and makes it
    /// effective. Records a licence outside the allowed list only with `license_override`.
    pub fn add_approval(&self, json: &[u8]) -> Result<ApprovalId, GovError> {
        let signed =
            SignedApproval::from_json(json).map_err(|e| GovError::Rejected(e.to_string()))?;
        let record = signed
            .verify(self.keys.current())
            .map_err(|e| GovError::Rejected(e.to_string()))?
            .clone();
        if !record.license_override && !self.licence_allowed(record.license.as_deref()) {
            return Err(GovError::Rejected(format!(
                "licence {} is not in [policy] licenses; approve with a licence override",
                record.license.as_deref().unwrap_or("unknown")
            )));
        }
        let id = signed.id().map_err(|e| GovError::Rejected(e.to_string()))?;
        signed
            .write_to_dir(&self.approvals_dir)
            .map_err(|e| GovError::Rejected(e.to_string()))?;
        self.reload()?;
        self.audit(AuditEvent::Approval {
            approval: id.clone(),
            source: record.source,
            name: record.name.clone(),
            revision: record.revision.clone(),
            approved_by: record.approved_by.clone(),
        });
        self.close_requests(&record, &id)?;
        Ok(id)
    }

    /// Verifies a signed revocation, writes it and makes it effective at once.
    pub fn add_revocation(&self, json: &[u8]) -> Result<ApprovalId, GovError> {
        let signed =
            SignedRevocation::from_json(json).map_err(|e| GovError::Rejected(e.to_string()))?;
        let record = signed
            .verify(self.keys.current())
            .map_err(|e| GovError::Rejected(e.to_string()))?
            .clone();
        let known = {
            let index = self.index.read().unwrap_or_else(|p| p.into_inner());
            index
                .by_name
                .values()
                .flatten()
                .any(|a| a.id == record.approval)
        };
        if !known {
            return Err(GovError::NotFound(format!("approval {}", record.approval)));
        }
        signed
            .write_to_dir(&self.approvals_dir)
            .map_err(|e| GovError::Rejected(e.to_string()))?;
        self.reload()?;
        self.audit(AuditEvent::Revocation {
            approval: record.approval.clone(),
            reason: record.reason.clone(),
            revoked_by: record.revoked_by.clone(),
        });
        Ok(record.approval)
    }

    /// Every loaded approval and every rejected record, for the admin API.
    pub fn list_approvals(&self) -> serde_json::Value {
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let mut approvals: Vec<&Arc<Approval>> = index.by_name.values().flatten().collect();
        approvals.sort_by_key(|a| std::cmp::Reverse(a.record.approved_at));
        serde_json::json!({
            "approvals": approvals.iter().map(|a| serde_json::json!({
                "id": a.id.to_string(),
                "record": a.record,
                "revoked": a.revoked,
                // The record file as signed, so approvals can be exported through the API.
                "signed": a.signed.to_json().ok(),
            })).collect::<Vec<_>>(),
            "rejected": index.rejected.iter().map(|(p, e)| serde_json::json!({
                "path": p.display().to_string(), "error": e,
            })).collect::<Vec<_>>(),
        })
    }
}

/// The mirror's own signing key (for the audit log): `mirror.key` in the data dir, created on
/// first start with `mirror.pub` beside it.
pub(crate) fn mirror_key(data_dir: &Path) -> Result<KeyPair, MirrorError> {
    let path = data_dir.join("mirror.key");
    if data_dir.join(rotate::PENDING).exists() {
        // Appending with either key now could put a line the chain does not allow.
        return Err(MirrorError::Config(format!(
            "{}: a mirror key rotation was interrupted; run `airlock rotate-key --data-dir {}` to finish it",
            data_dir.display(),
            data_dir.display()
        )));
    }
    if path.exists() {
        let key = KeyPair::read_private(&path).map_err(signing_err)?;
        // A crash between the two renames of a rotation leaves the old mirror.pub: put it right.
        let pub_path = data_dir.join("mirror.pub");
        if PublicKey::read(&pub_path).map(|p| p.id()).ok() != Some(key.public().id()) {
            rotate::replace_public(&key.public(), &pub_path)?;
        }
        return Ok(key);
    }
    std::fs::create_dir_all(data_dir).map_err(MirrorError::io(data_dir))?;
    let key = KeyPair::generate().map_err(signing_err)?;
    key.write_private(&path).map_err(signing_err)?;
    key.public()
        .write(&data_dir.join("mirror.pub"))
        .map_err(signing_err)?;
    tracing::info!(key = %key.public().id(), "generated the mirror's audit-log key");
    Ok(key)
}
