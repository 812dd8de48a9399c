//! Review requests: a client asked for something nothing approves. Airlock records who asked and
//! how often, fetches and scans the version in the background (the report is kept with the
//! request), and tells the client where the request waits. The audit log holds every request and
//! decision; the store holds the current state.

use signing::{ApprovalId, ApprovalRecord, AuditEvent, Source};
use verifier::Digest;

use super::{now, GovError, Governance};
use crate::error::MirrorError;
use crate::refusal::{Refusal, RequestNote};
use crate::store::Store;

/// How many distinct clients a request remembers.
const MAX_CLIENTS: usize = 20;

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RequestStatus {
    /// Waiting for review.
    Pending,
    /// Covered by an approval.
    Approved,
    /// Denied, with the reason clients see.
    Denied,
}

/// One file of a prepared (fetched, verified, scanned) version.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct PreparedFile {
    /// Repo path (HF) or layer media type and digest (Ollama).
    pub path: String,
    /// sha256 of the verified bytes.
    pub sha256: Digest,
    /// Size.
    pub size: u64,
}

/// A version fetched into quarantine, verified and scanned: what a reviewer approves.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Prepared {
    /// `hf` or `ollama`.
    pub source: Source,
    /// The name.
    pub name: String,
    /// The commit (HF) or manifest digest (Ollama).
    pub revision: String,
    /// The branch or tag asked for.
    pub revision_name: Option<String>,
    /// Every verified file.
    pub files: Vec<PreparedFile>,
    /// The licence found, if any.
    pub license: Option<String>,
    /// Whether `[policy] licenses` admits it.
    pub license_allowed: bool,
    /// Files that failed verification or scanning, with why. Such a version cannot be approved.
    pub refused: Vec<RefusedFile>,
}

/// A file that failed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RefusedFile {
    /// Which.
    pub file: String,
    /// Why.
    pub reason: String,
}

/// A review request.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RequestRecord {
    /// `req-…`.
    pub id: String,
    /// `hf` or `ollama`.
    pub source: Source,
    /// The name asked for.
    pub name: String,
    /// The revision asked for (`main`, a commit, a tag).
    pub revision: String,
    /// Clients that asked (address and token name if any), most recent last.
    pub clients: Vec<String>,
    /// First ask.
    pub first_seen: signing::Timestamp,
    /// Latest ask.
    pub last_seen: signing::Timestamp,
    /// Number of asks.
    pub count: u64,
    /// Where it stands.
    pub status: RequestStatus,
    /// Denial reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The approval that closed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// The background fetch's report, once done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<Prepared>,
    /// Why the background fetch failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_error: Option<String>,
}

fn request_id(source: Source, name: &str, revision: &str) -> String {
    let src = match source {
        Source::Hf => "hf",
        Source::Ollama => "ollama",
    };
    let d = Digest::of(format!("{src}\0{}\0{revision}", name.to_ascii_lowercase()).as_bytes());
    format!("req-{}", &d.hex()[..10])
}

fn key(id: &str) -> Vec<u8> {
    id.as_bytes().to_vec()
}

/// Whether recording a new request still has to charge the client's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Charge it now (and refuse to record if it is spent).
    Now,
    /// The caller charged it before looking the revision up upstream.
    Done,
}

impl Governance {
    /// Whether a request for `name` at `revision` is already recorded.
    pub fn has_request(
        &self,
        source: Source,
        name: &str,
        revision: &str,
    ) -> Result<bool, MirrorError> {
        let id = request_id(source, name, revision);
        Ok(self.store.requests.contains_key(key(&id))?)
    }

    /// Records that `client` asked for an unapproved `name` at `revision`, and returns the refusal
    /// the client gets (pointing at the request, or carrying the denial) and whether the request
    /// is new (the caller then starts the background fetch).
    pub fn request(
        &self,
        source: Source,
        name: &str,
        revision: &str,
        caller: &crate::Caller,
        charge: Charge,
    ) -> Result<(Refusal, Option<RequestRecord>), MirrorError> {
        let client = caller.to_string();
        let client = client.as_str();
        let id = request_id(source, name, revision);
        let now = now();
        let existing: Option<RequestRecord> = Store::get(&self.store.requests, &key(&id))?;
        let is_new = existing.is_none();
        if is_new && charge == Charge::Done {
            self.budget().count_record();
        }
        if is_new && charge == Charge::Now {
            if let Err(over) = self
                .budget()
                .take_request(&caller.budget_key(), std::time::Instant::now())
            {
                // Nothing is recorded or audited per request here: that is what the budget bounds.
                tracing::warn!(%client, %name, ?over, "review-request budget spent; not recorded");
                return Ok((
                    Refusal::NotApproved {
                        name: name.to_owned(),
                        request: None,
                    },
                    None,
                ));
            }
        }
        let mut rec = existing.unwrap_or_else(|| RequestRecord {
            id: id.clone(),
            source,
            name: name.to_owned(),
            revision: revision.to_owned(),
            clients: Vec::new(),
            first_seen: now,
            last_seen: now,
            count: 0,
            status: RequestStatus::Pending,
            reason: None,
            by: None,
            approval: None,
            report: None,
            report_error: None,
        });
        rec.count += 1;
        rec.last_seen = now;
        rec.clients.retain(|c| c != client);
        rec.clients.push(client.to_owned());
        if rec.clients.len() > MAX_CLIENTS {
            rec.clients.remove(0);
        }
        Store::put(&self.store.requests, key(&id), &rec)?;
        if is_new {
            self.audit(AuditEvent::Request {
                request: id.clone(),
                client: client.to_owned(),
                name: name.to_owned(),
                revision: Some(revision.to_owned()),
            });
        }
        let refusal = match rec.status {
            RequestStatus::Denied => Refusal::Denied {
                name: name.to_owned(),
                by: rec.by.clone().unwrap_or_default(),
                reason: rec.reason.clone().unwrap_or_default(),
            },
            _ => Refusal::NotApproved {
                name: name.to_owned(),
                request: Some(RequestNote {
                    // The web UI's page of the request (docs/governance.md, "Web UI").
                    url: format!("{}/ui/requests/{id}", self.public_url),
                    id,
                }),
            },
        };
        Ok((refusal, is_new.then_some(rec)))
    }

    /// Attaches the background fetch's outcome to a request.
    pub fn attach_report(
        &self,
        id: &str,
        report: Result<Prepared, String>,
    ) -> Result<(), MirrorError> {
        let Some(mut rec) = Store::get::<RequestRecord>(&self.store.requests, &key(id))? else {
            return Ok(());
        };
        match report {
            Ok(p) => {
                rec.report = Some(p);
                rec.report_error = None;
            }
            Err(e) => rec.report_error = Some(e),
        }
        Store::put(&self.store.requests, key(id), &rec)
    }

    /// One request.
    pub fn get_request(&self, id: &str) -> Result<Option<RequestRecord>, MirrorError> {
        Store::get(&self.store.requests, &key(id))
    }

    /// Every request, newest first.
    pub fn list_requests(&self) -> Result<Vec<RequestRecord>, MirrorError> {
        let mut out = Vec::new();
        for item in self.store.requests.iter() {
            let (k, v) = item?;
            out.push(serde_json::from_slice::<RequestRecord>(&v).map_err(|e| {
                MirrorError::Corrupt {
                    key: String::from_utf8_lossy(&k).into_owned(),
                    detail: e.to_string(),
                }
            })?);
        }
        out.sort_by_key(|r| std::cmp::Reverse(r.last_seen));
        Ok(out)
    }

    /// Denies a request; clients asking for it again see the reason.
    pub fn deny_request(
        &self,
        id: &str,
        reason: &str,
        by: &str,
    ) -> Result<RequestRecord, GovError> {
        // The reason is sent in every refusal of the name: bounded like a signed record's.
        signing::check_text("reason", reason, signing::MAX_REASON)
            .and_then(|()| signing::check_text("by", by, signing::MAX_WHO))
            .map_err(|e| GovError::Rejected(e.to_string()))?;
        let mut rec = self
            .get_request(id)?
            .ok_or_else(|| GovError::NotFound(format!("request {id}")))?;
        rec.status = RequestStatus::Denied;
        rec.reason = Some(reason.to_owned());
        rec.by = Some(by.to_owned());
        Store::put(&self.store.requests, key(id), &rec)?;
        self.audit(AuditEvent::Denial {
            request: id.to_owned(),
            name: rec.name.clone(),
            reason: reason.to_owned(),
            denied_by: by.to_owned(),
        });
        Ok(rec)
    }

    /// Marks pending requests that `record` now covers as approved.
    pub(super) fn close_requests(
        &self,
        record: &ApprovalRecord,
        id: &ApprovalId,
    ) -> Result<(), MirrorError> {
        for mut rec in self.list_requests()? {
            let same_name =
                rec.source == record.source && rec.name.eq_ignore_ascii_case(&record.name);
            let same_version = rec.revision.eq_ignore_ascii_case(&record.revision)
                || record.revision_name.as_deref() == Some(rec.revision.as_str());
            if same_name && same_version && rec.status != RequestStatus::Approved {
                rec.status = RequestStatus::Approved;
                rec.approval = Some(id.to_string());
                Store::put(&self.store.requests, key(&rec.id), &rec)?;
            }
        }
        Ok(())
    }
}
