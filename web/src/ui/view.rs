//! What the UI's pages show, gathered from the governance state, the index and the audit log.
//! Every function here reads the disk or the index: callers run them under `web::block`.

use std::collections::HashMap;

use mirror::governance::{Approval, RequestRecord};
use mirror::Mirror;
use serde_json::Value;
use signing::{ApprovalId, AuditEvent, Source};

/// Entries shown on the audit page (the newest).
const AUDIT_TAIL: usize = 300;
/// Distinct (name, reason) refusal groups kept while folding the log: a client asking for random
/// names must not grow the page's working set without bound.
const MAX_REFUSAL_GROUPS: usize = 5000;

/// `hf` / `ollama`.
pub fn source_str(s: Source) -> &'static str {
    match s {
        Source::Hf => "hf",
        Source::Ollama => "ollama",
    }
}

/// One file of a request's fetch-and-scan report.
pub struct FileView {
    pub path: String,
    pub sha256: String,
    pub size: String,
    /// `clean` or `refused`.
    pub status: &'static str,
    /// The refusal as the pipeline phrased it.
    pub reason: String,
    /// `critical`, `high`, `medium` … when the scanner graded it.
    pub severity: String,
    /// What the finding means for the reviewer.
    pub meaning: String,
}

/// A file compared with the previously approved version.
pub struct DiffRow {
    pub path: String,
    /// `added`, `removed`, `changed`, `same`.
    pub change: &'static str,
    pub before: String,
    pub after: String,
}

/// The previously approved version a request is compared with.
pub struct Previous {
    pub id: String,
    pub revision: String,
    pub approved_at: String,
    pub status: String,
    pub rows: Vec<DiffRow>,
}

/// Everything the request page shows.
pub struct RequestView {
    pub rec: RequestRecord,
    pub source: &'static str,
    pub clients: Vec<String>,
    pub files: Vec<FileView>,
    pub revision: String,
    pub license: String,
    pub license_allowed: bool,
    pub typosquat: Option<String>,
    pub signature: String,
    pub previous: Option<Previous>,
    /// Whether an approval can be signed for this report (a report with no refused file).
    pub approvable: bool,
    /// The record the page signs, minus the reviewer's fields (JSON), when approvable.
    pub record_template: String,
}

/// What a scan severity means (the scanner's own grading, `verifier::Severity`, and
/// `docs/scanning.md`).
fn meaning(severity: &str, reason: &str) -> String {
    let m = match severity {
        "critical" => "Known code execution (os.system, eval, marshalled code, Jinja sandbox escapes): loading this file runs code chosen by whoever wrote it.",
        "high" => "Likely exploitation or a loader attack (path traversal, bombs, code-carrying config). A pickle global that is not on the allowlist is refused at this level: anything not listed is refused.",
        "medium" => "Not on the allowlist, or structurally wrong in a way a loader might mis-handle.",
        "low" | "info" => "Unusual but not dangerous on its own.",
        _ if reason.contains("mismatch") || reason.contains("differs from the declared") => {
            "The bytes received are not the bytes the upstream declared: corrupted or tampered with on the way."
        }
        _ if reason.contains("unscannable") => {
            "The file could not be analysed; what cannot be read cannot be vouched for, so it is refused."
        }
        _ => "The file failed a check and is not served.",
    };
    m.to_owned()
}

/// The severity a scan refusal states (`… (severity: critical)`), if any.
fn severity_of(reason: &str) -> String {
    reason
        .rsplit_once("(severity: ")
        .and_then(|(_, s)| s.split(')').next())
        .filter(|s| s.len() < 16)
        .unwrap_or("")
        .to_owned()
}

/// The newest approval of `name` other than `except` (the approval that closed the request is not
/// "the previously approved version" of it).
fn newest_by_name(
    mirror: &Mirror,
    source: Source,
    name: &str,
    except: Option<&str>,
) -> Option<std::sync::Arc<Approval>> {
    mirror
        .governance()
        .approvals()
        .into_iter()
        .filter(|a| a.record.source == source && a.record.name.eq_ignore_ascii_case(name))
        .filter(|a| except != Some(a.id.as_str()))
        .max_by_key(|a| a.record.approved_at)
}

/// Whether an approval is in force, revoked or expired, as a word.
pub fn status_of(a: &Approval) -> String {
    if let Some(r) = &a.revoked {
        return format!("revoked by {} at {}", r.revoked_by, r.revoked_at);
    }
    let now = signing::Timestamp::from_system_time(std::time::SystemTime::now()).ok();
    match (a.record.expires_at, now) {
        (Some(t), Some(now)) if now >= t => format!("expired at {t}"),
        _ => "in force".into(),
    }
}

/// The request page's content. Blocking.
pub fn request(mirror: &Mirror, id: &str) -> Result<Option<RequestView>, mirror::MirrorError> {
    let Some(rec) = mirror.governance().get_request(id)? else {
        return Ok(None);
    };
    Ok(Some(from_record(mirror, rec)))
}

/// The page content of a request record, or of a version a reviewer had prepared (a record that
/// is not stored: empty id, no clients). Reads only memory (approvals, the typosquat lists).
pub fn from_record(mirror: &Mirror, rec: RequestRecord) -> RequestView {
    let gov = mirror.governance();
    let mut files = Vec::new();
    let (mut revision, mut license, mut license_allowed) =
        (rec.revision.clone(), String::new(), false);
    let mut approvable = false;
    let mut record_template = String::new();
    if let Some(p) = &rec.report {
        revision = p.revision.clone();
        license = p.license.clone().unwrap_or_else(|| "none found".into());
        license_allowed = p.license_allowed;
        for f in &p.files {
            files.push(FileView {
                path: f.path.clone(),
                sha256: f.sha256.to_string(),
                size: f.size.to_string(),
                status: "clean",
                reason: String::new(),
                severity: String::new(),
                meaning: String::new(),
            });
        }
        for r in &p.refused {
            let severity = severity_of(&r.reason);
            files.push(FileView {
                path: r.file.clone(),
                sha256: String::new(),
                size: String::new(),
                status: "refused",
                meaning: meaning(&severity, &r.reason),
                severity,
                reason: r.reason.clone(),
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        approvable = p.refused.is_empty() && !p.files.is_empty();
        if approvable {
            // Exactly the fields `airlock approve` takes from the prepared report; the page adds
            // the reviewer's (approved_by, approved_at, reason, expires_at, license_override).
            let mut t = serde_json::json!({
                "source": p.source,
                "name": p.name,
                "revision": p.revision,
                "files": p.files.iter().map(|f| serde_json::json!({
                    "path": f.path, "sha256": f.sha256, "size": f.size,
                })).collect::<Vec<_>>(),
            });
            if let Some(n) = p.revision_name.as_ref().filter(|n| **n != p.revision) {
                t["revision_name"] = Value::String(n.clone());
            }
            if let Some(l) = &p.license {
                t["license"] = Value::String(l.clone());
            }
            record_template = t.to_string();
        }
    }
    let approved = gov.approved_names(rec.source);
    let typosquat = mirror::check_typosquat(&rec.name, &approved, &mirror::WellKnown::shipped())
        .map(|s| s.reason);
    let signature = match rec.source {
        Source::Hf => match mirror.signature_rule(&rec.name) {
            Some(rule) => format!(
                "required by [[trust]] rule {rule}: a report exists only if the signature verified"
            ),
            None => "no [[trust]] rule requires a signature for this name".into(),
        },
        Source::Ollama => "Ollama manifests are pinned by digest; no signature rule applies".into(),
    };
    let previous =
        newest_by_name(mirror, rec.source, &rec.name, rec.approval.as_deref()).map(|a| {
            let before: HashMap<&str, &signing::PinnedFile> = a
                .record
                .files
                .iter()
                .map(|f| (f.path.as_str(), f))
                .collect();
            let mut rows = Vec::new();
            if let Some(p) = &rec.report {
                let now: HashMap<&str, &mirror::governance::PreparedFile> =
                    p.files.iter().map(|f| (f.path.as_str(), f)).collect();
                for f in &p.files {
                    rows.push(match before.get(f.path.as_str()) {
                        None => DiffRow {
                            path: f.path.clone(),
                            change: "added",
                            before: String::new(),
                            after: f.sha256.to_string(),
                        },
                        Some(b) if b.sha256 == f.sha256 => DiffRow {
                            path: f.path.clone(),
                            change: "same",
                            before: b.sha256.to_string(),
                            after: f.sha256.to_string(),
                        },
                        Some(b) => DiffRow {
                            path: f.path.clone(),
                            change: "changed",
                            before: b.sha256.to_string(),
                            after: f.sha256.to_string(),
                        },
                    });
                }
                for b in &a.record.files {
                    if !now.contains_key(b.path.as_str()) {
                        rows.push(DiffRow {
                            path: b.path.clone(),
                            change: "removed",
                            before: b.sha256.to_string(),
                            after: String::new(),
                        });
                    }
                }
                rows.sort_by(|x, y| x.path.cmp(&y.path));
            }
            Previous {
                id: a.id.to_string(),
                revision: a.record.revision.clone(),
                approved_at: a.record.approved_at.to_string(),
                status: status_of(&a),
                rows,
            }
        });
    RequestView {
        source: source_str(rec.source),
        clients: rec.clients.iter().rev().cloned().collect(),
        files,
        revision,
        license,
        license_allowed,
        typosquat,
        signature,
        previous,
        approvable,
        record_template,
        rec,
    }
}

/// One download of an approved version.
pub struct DownloadRow {
    pub time: String,
    pub client: String,
    pub file: String,
    pub digest: String,
}

/// Who downloaded under `approval` (from the audit log). Blocking.
pub fn downloads(
    mirror: &Mirror,
    id: &ApprovalId,
) -> Result<Vec<DownloadRow>, signing::SigningError> {
    let mut out = Vec::new();
    for e in signing::downloads_of(mirror.governance().audit_path(), id)? {
        if let AuditEvent::Download {
            client,
            file,
            digest,
            ..
        } = &e.event
        {
            out.push(DownloadRow {
                time: e.time.to_string(),
                client: client.clone(),
                file: file.clone(),
                digest: digest.to_string(),
            });
        }
    }
    Ok(out)
}

/// One audit entry, for display.
pub struct EntryRow {
    pub seq: u64,
    pub time: String,
    pub kind: String,
    pub detail: String,
}

/// A group of refusals of one name for one reason.
pub struct RefusalRow {
    pub name: String,
    pub reason: String,
    pub count: u64,
    pub last: String,
    pub clients: String,
}

/// The audit log read once: its verification, its newest entries, and its refusals folded.
pub struct AuditView {
    pub ok: bool,
    pub status: String,
    pub entries: Vec<EntryRow>,
    pub refusals: Vec<RefusalRow>,
}

fn detail(event: &AuditEvent) -> (String, String) {
    let mut v = serde_json::to_value(event).unwrap_or(Value::Null);
    let kind = v
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_owned();
    if let Value::Object(m) = &mut v {
        m.remove("kind");
        let parts: Vec<String> = m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect();
        return (kind, parts.join("  "));
    }
    (kind, String::new())
}

/// Verifies the log against the mirror's key and folds it. Blocking; one pass each.
pub fn audit(mirror: &Mirror) -> Result<AuditView, signing::SigningError> {
    let path = mirror.governance().audit_path();
    let key = signing::PublicKey::read(&path.with_file_name("mirror.pub"))?;
    let outcome = signing::verify_log(path, &[key])?;
    let status = match &outcome.first_problem {
        None => match &outcome.head {
            Some(h) => format!(
                "verified: {} entries, each chained to the one before and signed by the mirror's key (head: entry {} sha256 {})",
                outcome.entries, h.seq, h.sha256
            ),
            None => "verified: the log is empty".into(),
        },
        Some(p) => format!(
            "FAILED at {p} ({} entries verified before it)",
            outcome.entries
        ),
    };
    let mut tail = std::collections::VecDeque::with_capacity(AUDIT_TAIL);
    let mut groups: HashMap<(String, String), RefusalRow> = HashMap::new();
    for e in signing::log_entries(path)? {
        // An unparsable line is what verification reported; stop the listing there too.
        let Ok(e) = e else { break };
        if let AuditEvent::Refusal {
            client,
            name,
            reason,
            ..
        } = &e.event
        {
            let key = (name.clone(), reason.clone());
            if groups.len() < MAX_REFUSAL_GROUPS || groups.contains_key(&key) {
                let g = groups.entry(key).or_insert_with(|| RefusalRow {
                    name: name.clone(),
                    reason: reason.clone(),
                    count: 0,
                    last: String::new(),
                    clients: String::new(),
                });
                g.count += 1;
                g.last = e.time.to_string();
                if !g.clients.split(", ").any(|c| c == client) && g.clients.len() < 300 {
                    if !g.clients.is_empty() {
                        g.clients.push_str(", ");
                    }
                    g.clients.push_str(client);
                }
            }
        }
        if tail.len() == AUDIT_TAIL {
            tail.pop_front();
        }
        let (kind, detail) = detail(&e.event);
        tail.push_back(EntryRow {
            seq: e.seq,
            time: e.time.to_string(),
            kind,
            detail,
        });
    }
    let mut refusals: Vec<RefusalRow> = groups.into_values().collect();
    refusals.sort_by(|a, b| b.last.cmp(&a.last).then(b.count.cmp(&a.count)));
    Ok(AuditView {
        ok: outcome.ok,
        status,
        entries: tail.into_iter().rev().collect(),
        refusals,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_refusal_names_its_severity_and_meaning() {
        let r = "airlock: x.bin refused: calls posix.system via REDUCE at offset 0x26 (severity: critical)";
        assert_eq!(severity_of(r), "critical");
        assert!(meaning("critical", r).starts_with("Known code execution"));
        let digest = "sha256 mismatch: upstream declared 00, received bytes hash to 11";
        assert_eq!(severity_of(digest), "");
        assert!(meaning("", digest).contains("not the bytes the upstream declared"));
        assert_eq!(severity_of("(severity: an overly long made-up word)"), "");
    }
}
