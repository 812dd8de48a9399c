//! Admission: the one place that decides whether a name and revision may be served, in the order
//! `docs/governance.md` documents — approvals, then config allow rules, then typosquat refusal or
//! a review request. Every refusal is audited.

use std::sync::Arc;

use signing::{AuditEvent, Source};

use super::{Lookup, Mirror, Missing};
use crate::error::MirrorError;
use crate::governance::{Approval, Charge, Verdict};
use crate::names::{HfRepo, OllamaName, Reference, RevisionName};
use crate::refusal::Refusal;

/// The outcome of admission.
pub(crate) enum Admit {
    /// Serve, at `pin` if given (a 40-hex commit or a manifest digest), under `approval` if one
    /// decides.
    Allowed {
        pin: Option<String>,
        approval: Option<Arc<Approval>>,
    },
    /// Refused.
    Refused(Refusal),
    /// Not approved, and the revision does not exist upstream: nothing was recorded.
    Missing(Missing),
}

/// What a client asked for, in the form its upstream can look up: a review request is recorded
/// only for a revision that resolves there.
#[derive(Clone, Copy)]
pub(crate) enum Asked<'a> {
    /// A Hugging Face repo at a branch, tag or commit.
    Hf(&'a HfRepo, &'a RevisionName),
    /// An Ollama model at a tag or manifest digest.
    Ollama(&'a OllamaName, &'a Reference),
}

/// Whether an asked-for revision exists upstream.
enum Upstream {
    Exists,
    Missing(Missing),
    Refused(Refusal),
}

impl Mirror {
    /// Decides for `name` (policy spelling: `org/repo`, `datasets/org/repo`, `namespace/model`) at
    /// `asked` (a branch, tag, commit or digest). `config` is the allow rules' answer (with their
    /// pin); it is consulted only when no approval mentions the name.
    pub(crate) async fn admit(
        &self,
        source: Source,
        name: &str,
        asked: &str,
        config: impl FnOnce() -> Result<Option<String>, Refusal>,
        client: &crate::Caller,
        target: Asked<'_>,
    ) -> Result<Admit, MirrorError> {
        let refusal = match self.gov.decide(source, name, asked) {
            Verdict::Approved(a) => {
                return Ok(Admit::Allowed {
                    pin: Some(a.record.revision.clone()),
                    approval: Some(a),
                })
            }
            Verdict::Refused(r) => r,
            Verdict::NoApprovals => match config() {
                Ok(pin) => {
                    return Ok(Admit::Allowed {
                        pin,
                        approval: None,
                    })
                }
                // Offline there is no one to review a request for and nothing to fetch it from:
                // the reason says where the version must come from.
                Err(Refusal::NotApproved { .. }) if self.offline => Refusal::Offline {
                    name: name.to_owned(),
                },
                Err(Refusal::NotApproved { .. }) => {
                    let refusal = match self.unapproved(source, name, asked, client, target).await?
                    {
                        Ok(r) => r,
                        Err(miss) => return Ok(Admit::Missing(miss)),
                    };
                    // No request noted: the client's review-request budget is spent. Audit that
                    // once a minute per client, not once per name it floods us with.
                    if let Refusal::NotApproved { request: None, .. } = &refusal {
                        let now = std::time::Instant::now();
                        if let Some(skipped) =
                            self.gov.budget().note_refused(&client.budget_key(), now)
                        {
                            let (gov, event) = (
                                self.gov.clone(),
                                AuditEvent::Refusal {
                                    client: client.to_string(),
                                    name: name.to_owned(),
                                    revision: Some(asked.to_owned()),
                                    reason: format!(
                                        "{refusal} (review-request budget spent; {skipped} \
                                         such refusals of this client before this one \
                                         were not logged one by one)"
                                    ),
                                },
                            );
                            self.rt.spawn_blocking(move || gov.audit(event));
                        }
                        return Ok(Admit::Refused(refusal));
                    }
                    refusal
                }
                Err(r) => r,
            },
        };
        self.audit_refusal(client, name, asked, &refusal);
        Ok(Admit::Refused(refusal))
    }

    /// Records a refusal in the audit log.
    pub(crate) fn audit_refusal(
        &self,
        client: &crate::Caller,
        name: &str,
        asked: &str,
        refusal: &Refusal,
    ) {
        let (gov, event) = (
            self.gov.clone(),
            AuditEvent::Refusal {
                client: client.to_string(),
                name: name.to_owned(),
                revision: Some(asked.to_owned()),
                reason: refusal.to_string(),
            },
        );
        // The append fsyncs: off the event loop, and the client need not wait for it.
        self.rt.spawn_blocking(move || gov.audit(event));
    }

    /// A name nothing approves: a typosquat is refused outright; anything else becomes (or counts
    /// towards) a review request, fetched and scanned in the background for the reviewer. A new
    /// request is recorded only once its revision resolved upstream: `Err(miss)` (nothing
    /// recorded, nothing audited) when it does not exist there.
    async fn unapproved(
        &self,
        source: Source,
        name: &str,
        asked: &str,
        client: &crate::Caller,
        target: Asked<'_>,
    ) -> Result<Result<Refusal, Missing>, MirrorError> {
        let bare = name.strip_prefix("datasets/").unwrap_or(name);
        let mut approved = self.gov.approved_names(source);
        approved.extend(
            self.policy
                .allowed_names(source == Source::Ollama)
                .iter()
                .cloned(),
        );
        let approved: Vec<String> = approved
            .iter()
            .map(|n| n.strip_prefix("datasets/").unwrap_or(n).to_owned())
            .collect();
        if let Some(s) = crate::typosquat::check(bare, &approved, &self.well_known) {
            return Ok(Ok(Refusal::Typosquat {
                name: name.to_owned(),
                reason: s.reason,
            }));
        }
        let (gov, name2, asked2) = (self.gov.clone(), name.to_owned(), asked.to_owned());
        let known = self
            .blocking(move || gov.has_request(source, &name2, &asked2))
            .await?;
        let mut charge = Charge::Now;
        if !known {
            // A remembered miss costs nothing upstream, so it is answered before any budget.
            if let Some(miss) = self.known_missing(target) {
                return Ok(Err(miss));
            }
            // The upstream lookup is what a flood of distinct names costs: charged first.
            if let Err(over) = self
                .gov
                .budget()
                .take_client(&client.budget_key(), std::time::Instant::now())
            {
                tracing::warn!(%client, %name, ?over, "review-request budget spent; not looked up");
                return Ok(Ok(Refusal::NotApproved {
                    name: name.to_owned(),
                    request: None,
                }));
            }
            charge = Charge::Done;
            match self.exists_upstream(target).await? {
                Upstream::Exists => {}
                Upstream::Missing(miss) => return Ok(Err(miss)),
                Upstream::Refused(r) => return Ok(Ok(r)),
            }
        }
        // Recording the request writes the index (and the audit log): blocking work.
        let gov = self.gov.clone();
        let (name2, asked2, client2) = (name.to_owned(), asked.to_owned(), client.clone());
        let (refusal, new) = self
            .blocking(move || gov.request(source, &name2, &asked2, &client2, charge))
            .await?;
        if let Some(rec) = new.filter(|_| self.gov.prefetch_requests()) {
            if let Some(me) = self.me.upgrade() {
                self.rt.spawn(async move {
                    let cap = me.gov.prefetch_max_bytes();
                    let budget = me.gov.budget();
                    // The semaphore is never closed, so acquire fails only if it were.
                    let Ok(_slot) = budget.prefetch_slots.acquire().await else {
                        return;
                    };
                    let report = match budget.reserve_prefetch(cap, std::time::Instant::now()) {
                        Some(reservation) => {
                            let report =
                                me.prepare(rec.source, &rec.name, &rec.revision, Some(cap)).await;
                            let used = match &report {
                                Ok(p) => p.files.iter().map(|f| f.size).sum(),
                                Err(_) => cap,
                            };
                            budget.settle_prefetch(reservation, used);
                            report
                        }
                        None => Err("not prefetched: today's prefetch quota \
                                     ([governance] prefetch_quota_bytes) is used up; \
                                     `airlock approve` fetches it"
                            .to_owned()),
                    };
                    if let Err(e) = me.gov.attach_report(&rec.id, report) {
                        tracing::warn!(request = %rec.id, error = %e, "could not store the request's report");
                    }
                });
            }
        }
        Ok(Ok(refusal))
    }

    /// A repository the upstream said does not exist, remembered for any revision of it: a flood
    /// of revisions of one missing repo costs one upstream request per [`MISSING_TTL`].
    ///
    /// [`MISSING_TTL`]: super::MISSING_TTL
    fn known_missing(&self, target: Asked<'_>) -> Option<Missing> {
        self.missing.get(&repo_missing_key(target))
    }

    /// Looks the revision up upstream (single-flight, through the same negative cache as
    /// serving). What it stores is only what a real revision yields (its resolution, or its
    /// verified manifest); a revision that does not exist leaves nothing behind.
    async fn exists_upstream(&self, target: Asked<'_>) -> Result<Upstream, MirrorError> {
        let looked = match target {
            Asked::Hf(repo, rev) => match rev.as_commit() {
                // A commit is looked up by its listing, which serving it would need anyway.
                Some(c) => match self.resolve_snapshot(repo, rev, Some(c)).await? {
                    Lookup::Found(_) => Lookup::Found(()),
                    other => other.map_found(),
                },
                None => self.resolve(repo, rev).await?.map_found(),
            },
            Asked::Ollama(name, reference) => {
                let expect = match reference {
                    Reference::Digest(d) => Some(*d),
                    Reference::Tag(_) => None,
                };
                self.fetch_manifest(name, reference, expect)
                    .await?
                    .map_found()
            }
        };
        Ok(match looked {
            Lookup::Found(()) => Upstream::Exists,
            // A gated or private repo exists; the reviewer decides whether to get access.
            Lookup::Refused(Refusal::UpstreamDenied { .. }) => Upstream::Exists,
            Lookup::Refused(r) => Upstream::Refused(r),
            Lookup::RepoNotFound(m) => {
                let miss = Missing::Repo(m);
                self.missing.insert(repo_missing_key(target), miss.clone());
                Upstream::Missing(miss)
            }
            Lookup::RevisionNotFound(m) => Upstream::Missing(Missing::Revision(m)),
            Lookup::EntryNotFound { .. } => Upstream::Missing(Missing::Revision(String::new())),
        })
    }
}

/// The negative cache's key for "this whole repository is missing".
fn repo_missing_key(target: Asked<'_>) -> String {
    match target {
        Asked::Hf(repo, _) => format!("repo\0{}", repo.index_key()),
        Asked::Ollama(name, _) => format!("repo\0oci\0{}", name.index_key()),
    }
}

impl<T> Lookup<T> {
    /// The same answer with the found value dropped.
    fn map_found(self) -> Lookup<()> {
        match self {
            Lookup::Found(_) => Lookup::Found(()),
            Lookup::Refused(r) => Lookup::Refused(r),
            Lookup::RepoNotFound(m) => Lookup::RepoNotFound(m),
            Lookup::RevisionNotFound(m) => Lookup::RevisionNotFound(m),
            Lookup::EntryNotFound { commit } => Lookup::EntryNotFound { commit },
        }
    }
}
