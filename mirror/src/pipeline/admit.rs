//! Admission: the one place that decides whether a name and revision may be served, in the order
//! `docs/governance.md` documents — approvals, then config allow rules, then typosquat refusal or
//! a review request. Every refusal is audited.

use std::sync::Arc;

use signing::{AuditEvent, Source};

use super::Mirror;
use crate::error::MirrorError;
use crate::governance::{Approval, Verdict};
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
                    let refusal = self.unapproved(source, name, asked, client).await?;
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
    /// towards) a review request, fetched and scanned in the background for the reviewer.
    async fn unapproved(
        &self,
        source: Source,
        name: &str,
        asked: &str,
        client: &crate::Caller,
    ) -> Result<Refusal, MirrorError> {
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
            return Ok(Refusal::Typosquat {
                name: name.to_owned(),
                reason: s.reason,
            });
        }
        // Recording the request writes the index (and the audit log): blocking work.
        let gov = self.gov.clone();
        let (name2, asked2, client2) = (name.to_owned(), asked.to_owned(), client.clone());
        let (refusal, new) = self
            .blocking(move || gov.request(source, &name2, &asked2, &client2))
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
        Ok(refusal)
    }
}
