//! The governance team's subcommands: `keygen`, `approve`, `requests`, `revoke`, `audit` and
//! `approvals` (see `docs/governance.md`).
//!
//! Signing happens here, on the approver's machine: the governance private key never travels to
//! the server. Everything that changes the server's state goes through its admin API (bearer
//! token); only `audit` reads files directly, because the log must be checkable without trusting
//! the server that wrote it.
//!
//! Exit codes: 0 done, 1 refused or a failed check (a refused version, a rejected record, a broken
//! audit log), 2 any other error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context};
use mirror::governance::{Prepared, RequestRecord};
use serde_json::Value;
use signing::{
    sign, ApprovalId, ApprovalRecord, KeyPair, PinnedFile, PublicKey, RevocationRecord,
    SignedApproval, SignedRevocation, Source, Timestamp,
};

/// Ordinary admin calls answer at once; a minute means the server is stuck.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// `POST /admin/prepare` fetches, verifies and scans a whole version: allow for a large model.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Largest answer body read from the server (the approvals list of a big mirror is the largest).
const MAX_ANSWER: usize = 256 * 1024 * 1024;

/// How to reach the running server's admin API.
#[derive(clap::Args, Debug, Clone)]
pub struct ServerArgs {
    /// Base URL of the running Airlock.
    #[arg(long, env = "AIRLOCK_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// The admin API's bearer token (`[governance] admin_token` on the server).
    #[arg(long, env = "AIRLOCK_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
}

/// Who signs, and why.
#[derive(clap::Args, Debug, Clone)]
pub struct SignerArgs {
    /// The governance private key (from `airlock keygen`).
    #[arg(long)]
    pub key: PathBuf,
    /// Who approves (a person or team); recorded in the signed record.
    #[arg(long)]
    pub by: String,
    /// Why; recorded in the signed record.
    #[arg(long)]
    pub reason: String,
    /// When the approval runs out (RFC 3339, e.g. 2027-01-31T00:00:00Z).
    #[arg(long)]
    pub expires: Option<String>,
    /// Approve although the licence is not in the server's `[policy] licenses`.
    #[arg(long)]
    pub license_override: bool,
    /// Also write the signed record file into this directory (for review in git).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Only write the signed record into `--out` (to review it in git, then `approvals import`);
    /// do not send it to the server.
    #[arg(long, requires = "out")]
    pub no_send: bool,
    /// Approve a name although it looks like an approved name or a well-known publisher
    /// (clients asking for it are refused as a typosquat until it is approved).
    #[arg(long)]
    pub allow_lookalike: bool,
    /// Approve only the files matching this glob (`*` and `?`; repeat the flag for more).
    #[arg(long)]
    pub files: Vec<String>,
}

/// Where the data directory is (for `audit`), as for `airlock reindex`.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// TOML config file (for `data_dir`).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the config and AIRLOCK_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `airlock keygen`.
#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// Directory for `governance.key` (mode 0600) and `governance.pub`.
    #[arg(long)]
    pub out: PathBuf,
}

/// `airlock approve`.
#[derive(clap::Args, Debug)]
pub struct ApproveArgs {
    #[command(subcommand)]
    pub what: ApproveWhat,
}

/// What to approve.
#[derive(clap::Subcommand, Debug)]
pub enum ApproveWhat {
    /// A Hugging Face repository (`org/repo`, `repo` or `datasets/org/repo`).
    Hf {
        /// The repository.
        name: String,
        /// Branch, tag or commit to approve.
        #[arg(long, default_value = "main")]
        revision: String,
        #[command(flatten)]
        signer: SignerArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// An Ollama model (`namespace/model[:tag]`, `model[:tag]` for `library/`).
    Ollama {
        /// The model.
        name: String,
        #[command(flatten)]
        signer: SignerArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `airlock requests`.
#[derive(clap::Args, Debug)]
pub struct RequestsArgs {
    #[command(subcommand)]
    pub what: RequestsCmd,
}

/// Review requests.
#[derive(clap::Subcommand, Debug)]
pub enum RequestsCmd {
    /// List requests, newest first.
    List {
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show one request with its fetch-and-scan report.
    Show {
        /// The request id (`req-…`).
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Approve the version a request asks for (prepared and signed as `airlock approve` does).
    Approve {
        /// The request id.
        id: String,
        #[command(flatten)]
        signer: SignerArgs,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Deny a request; clients asking for it see the reason.
    Deny {
        /// The request id.
        id: String,
        /// Why (shown to clients).
        #[arg(long)]
        reason: String,
        /// Who denies it.
        #[arg(long)]
        by: Option<String>,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// `airlock revoke`.
#[derive(clap::Args, Debug)]
pub struct RevokeArgs {
    /// The approval to withdraw (`appr-…`).
    pub approval: String,
    /// Why; shown to clients that are refused because of it.
    #[arg(long)]
    pub reason: String,
    /// The governance private key.
    #[arg(long)]
    pub key: PathBuf,
    /// Who revokes it.
    #[arg(long)]
    pub by: String,
    /// Also write the signed revocation file into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `airlock audit`.
#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub what: AuditCmd,
}

/// The audit log (read from disk, not through the server).
#[derive(clap::Subcommand, Debug)]
pub enum AuditCmd {
    /// Check every line's chain and signature (exit 0 ok, 1 the first bad line).
    Verify {
        /// The log (default `<data_dir>/audit.log`).
        #[arg(long)]
        log: Option<PathBuf>,
        /// Trusted mirror public key(s) (default `<data_dir>/mirror.pub`; repeatable).
        #[arg(long)]
        key: Vec<PathBuf>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Print the log's lines (JSON lines, byte for byte) at or after `--since`.
    Export {
        /// RFC 3339 time; earlier entries are left out.
        #[arg(long)]
        since: Option<String>,
        /// The log (default `<data_dir>/audit.log`).
        #[arg(long)]
        log: Option<PathBuf>,
        #[command(flatten)]
        data: DataArgs,
    },
    /// Recover from a torn last line (a crash or a full disk mid-append, which stops `serve`):
    /// saves the torn bytes to `audit.log.torn-<offset>`, cuts them off, and records the cut as a
    /// signed entry. Complete lines are never touched. The server must be stopped.
    Recover {
        #[command(flatten)]
        data: DataArgs,
    },
    /// Who downloaded what under an approval, and when.
    Downloads {
        /// The approval (`appr-…`).
        approval: String,
        /// The log (default `<data_dir>/audit.log`).
        #[arg(long)]
        log: Option<PathBuf>,
        #[command(flatten)]
        data: DataArgs,
    },
}

/// `airlock approvals`.
#[derive(clap::Args, Debug)]
pub struct ApprovalsArgs {
    #[command(subcommand)]
    pub what: ApprovalsCmd,
}

/// Record files in bulk.
#[derive(clap::Subcommand, Debug)]
pub enum ApprovalsCmd {
    /// Write every approval (and revocation) the server accepted into DIR, one signed file each.
    Export {
        /// Target directory (created if missing).
        dir: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
        /// Where to read the signed files if the server's list does not carry them.
        #[command(flatten)]
        data: DataArgs,
    },
    /// Send every record file in DIR (`appr-*.json`, then `revocation-*.json`) to the server.
    Import {
        /// Directory of record files.
        dir: PathBuf,
        #[command(flatten)]
        server: ServerArgs,
    },
}

// ---- the admin API client ------------------------------------------------------------------------

/// A non-2xx answer from the admin API, with the server's `error` text.
#[derive(Debug)]
pub struct ServerError {
    /// HTTP status.
    pub status: u16,
    /// The JSON `error` field, or the start of the body.
    pub message: String,
}

impl std::fmt::Display for ServerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "server answered {}: {}", self.status, self.message)
    }
}

impl std::error::Error for ServerError {}

struct Admin {
    base: String,
    token: String,
    http: reqwest::blocking::Client,
}

impl Admin {
    fn new(args: &ServerArgs) -> anyhow::Result<Admin> {
        let token = match args.admin_token.as_deref() {
            Some(t) if !t.is_empty() => t.to_owned(),
            // Without a token every call would be refused; say what is missing instead.
            _ => bail!("no admin token: pass --admin-token or set AIRLOCK_ADMIN_TOKEN"),
        };
        let http = reqwest::blocking::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(Admin {
            base: args.server.trim_end_matches('/').to_owned(),
            token,
            http,
        })
    }

    fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path)), path)
    }

    fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path)).json(body), path)
    }

    fn post_bytes(&self, path: &str, body: Vec<u8>) -> anyhow::Result<Value> {
        let req = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        self.send(req, path)
    }

    fn prepare(&self, source: Source, name: &str, revision: &str) -> anyhow::Result<Prepared> {
        let body = serde_json::json!({ "source": source, "name": name, "revision": revision });
        let req = self
            .http
            .post(self.url("/admin/prepare"))
            .timeout(PREPARE_TIMEOUT)
            .json(&body);
        let v = self.send(req, "/admin/prepare")?;
        serde_json::from_value(v).context("the server's prepare answer is not a Prepared report")
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder, path: &str) -> anyhow::Result<Value> {
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .with_context(|| format!("cannot reach {}{path}", self.base))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .with_context(|| format!("reading the answer of {path}"))?;
        if bytes.len() > MAX_ANSWER {
            bail!("the answer of {path} is larger than {MAX_ANSWER} bytes");
        }
        if !status.is_success() {
            let message = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
                // Not Airlock's JSON error (a proxy in between?): show a bounded start of the body.
                .unwrap_or_else(|| String::from_utf8_lossy(&bytes).chars().take(300).collect());
            return Err(ServerError {
                status: status.as_u16(),
                message,
            }
            .into());
        }
        serde_json::from_slice(&bytes).with_context(|| format!("the answer of {path} is not JSON"))
    }
}

/// Turns a record the server rejected (400) into "refused" (exit 1); other failures stay errors.
fn refused_is_one(r: anyhow::Result<ExitCode>) -> anyhow::Result<ExitCode> {
    match r {
        Err(e) => match e.downcast_ref::<ServerError>() {
            Some(se) if se.status == 400 => {
                eprintln!("airlock: refused: {}", se.message);
                Ok(ExitCode::from(1))
            }
            _ => Err(e),
        },
        ok => ok,
    }
}

fn now() -> anyhow::Result<Timestamp> {
    Timestamp::from_system_time(SystemTime::now()).context("the system clock is out of range")
}

fn read_key(path: &Path) -> anyhow::Result<KeyPair> {
    KeyPair::read_private(path)
        .with_context(|| format!("reading the governance key {}", path.display()))
}

// ---- keygen ----------------------------------------------------------------------------------------

/// `airlock keygen --out DIR`.
pub fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let private = args.out.join("governance.key");
    let public = args.out.join("governance.pub");
    // Check both first, so a half-existing pair is not completed with a mismatched half.
    for p in [&private, &public] {
        if p.exists() {
            bail!(
                "{} exists; refusing to overwrite a governance key",
                p.display()
            );
        }
    }
    let key = KeyPair::generate()?;
    key.write_private(&private)?;
    key.public().write(&public)?;
    println!(
        "wrote {} (keep it secret) and {}",
        private.display(),
        public.display()
    );
    println!("key id {}", key.public().id());
    println!(
        "trust it on the server with: [governance] keys = [\"{}\"]",
        public.display()
    );
    Ok(ExitCode::SUCCESS)
}

// ---- approve -----------------------------------------------------------------------------------------

/// `airlock approve hf|ollama …`.
pub fn approve(args: ApproveArgs) -> anyhow::Result<ExitCode> {
    refused_is_one((|| match args.what {
        ApproveWhat::Hf {
            name,
            revision,
            signer,
            server,
        } => approve_version(&Admin::new(&server)?, &signer, Source::Hf, &name, &revision),
        ApproveWhat::Ollama {
            name,
            signer,
            server,
        } => {
            let (name, tag) = split_ollama(&name)?;
            approve_version(&Admin::new(&server)?, &signer, Source::Ollama, &name, &tag)
        }
    })())
}

/// `ns/model:tag` → (`ns/model`, `tag`); a bare model is in `library/`, the default tag `latest`.
fn split_ollama(s: &str) -> anyhow::Result<(String, String)> {
    let (path, tag) = match s.rsplit_once(':') {
        // A colon before the last slash would be a registry port, which this name form excludes.
        Some((p, t)) if !t.contains('/') => (p, t),
        _ => (s, "latest"),
    };
    if path.is_empty() || tag.is_empty() {
        bail!("expected namespace/model[:tag], got {s:?}");
    }
    let name = if path.contains('/') {
        path.to_owned()
    } else {
        format!("library/{path}")
    };
    Ok((name, tag.to_owned()))
}

/// Prepares `name` at `revision` on the server, checks the report, signs an approval of the
/// reported pins and sends it. Exit 1 if the version or its licence is refused.
fn approve_version(
    admin: &Admin,
    signer: &SignerArgs,
    source: Source,
    name: &str,
    revision: &str,
) -> anyhow::Result<ExitCode> {
    // The record would refuse them at signing, after a prepare that may take minutes: say so now.
    signing::check_text("reason", &signer.reason, signing::MAX_REASON)?;
    signing::check_text("by", &signer.by, signing::MAX_WHO)?;
    // Read the key and the expiry before the (possibly long) prepare, so a typo fails at once.
    let key = read_key(&signer.key)?;
    let expires_at = match &signer.expires {
        Some(s) => Some(
            s.parse::<Timestamp>()
                .with_context(|| format!("--expires {s:?}"))?,
        ),
        None => None,
    };
    if !signer.allow_lookalike {
        if let Some(s) = lookalike(admin, source, name)? {
            // An approver's typo would otherwise whitelist the very squat the check exists for.
            eprintln!(
                "airlock: refused: {name} {}; pass --allow-lookalike if this really is the name to approve",
                s.reason
            );
            return Ok(ExitCode::from(1));
        }
    }
    eprintln!("preparing {name} at {revision} (fetch, verify, scan) …");
    let prepared = admin.prepare(source, name, revision)?;
    if !prepared.refused.is_empty() {
        eprintln!(
            "airlock: refused: {} at {} has files that failed verification or scanning:",
            prepared.name, prepared.revision
        );
        for f in &prepared.refused {
            eprintln!("  {}: {}", f.file, f.reason);
        }
        return Ok(ExitCode::from(1));
    }
    if !prepared.license_allowed && !signer.license_override {
        eprintln!(
            "airlock: refused: licence {} of {} is not in the server's [policy] licenses; \
             pass --license-override to approve it anyway",
            prepared.license.as_deref().unwrap_or("(none found)"),
            prepared.name
        );
        return Ok(ExitCode::from(1));
    }
    let mut files = Vec::new();
    for f in &prepared.files {
        if signer.files.is_empty() || signer.files.iter().any(|g| glob_match(g, &f.path)) {
            files.push(PinnedFile {
                path: f.path.clone(),
                sha256: f.sha256,
                size: f.size,
            });
        }
    }
    if files.is_empty() {
        eprintln!(
            "airlock: refused: no file of {} at {} matches {:?}",
            prepared.name, prepared.revision, signer.files
        );
        return Ok(ExitCode::from(1));
    }
    let record = ApprovalRecord {
        source: prepared.source,
        name: prepared.name.clone(),
        revision: prepared.revision.clone(),
        // A commit asked by its hash names no branch; keep only real names.
        revision_name: prepared
            .revision_name
            .clone()
            .filter(|r| *r != prepared.revision),
        files,
        approved_by: signer.by.clone(),
        approved_at: now()?,
        expires_at,
        reason: signer.reason.clone(),
        license: prepared.license.clone(),
        // Recorded as the approver chose: it states that they accept the licence whatever the
        // policy of the mirror that later loads the record says.
        license_override: signer.license_override,
    };
    let signed = sign(record, &key)?;
    let id = signed.id()?;
    if signer.no_send {
        // `requires = "out"` makes clap enforce this; checked again so no path loses the record.
        let Some(dir) = &signer.out else {
            bail!("--no-send needs --out");
        };
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = signed.write_to_dir(dir)?;
        eprintln!(
            "wrote {} (not sent: import it with `airlock approvals import`)",
            path.display()
        );
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let answer = admin.post_bytes("/admin/approvals", signed.to_json()?.into_bytes())?;
    if let Some(server_id) = answer.get("id").and_then(Value::as_str) {
        if server_id != id.as_str() {
            bail!("the server stored approval {server_id}, but the signed record is {id}");
        }
    }
    if let Some(dir) = &signer.out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = signed.write_to_dir(dir)?;
        eprintln!("wrote {}", path.display());
    }
    let r = signed.record();
    eprintln!(
        "approved {} at {} ({} files, licence {}) as {}",
        r.name,
        r.revision,
        r.files.len(),
        r.license.as_deref().unwrap_or("none"),
        id
    );
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// Whether `name` is confusable with a name the server has approved (and not revoked) or with a
/// shipped well-known publisher: the same check the server applies to clients' requests.
fn lookalike(
    admin: &Admin,
    source: Source,
    name: &str,
) -> anyhow::Result<Option<mirror::Suspicion>> {
    let list = admin.get("/admin/approvals")?;
    let mut approved = Vec::new();
    for a in list
        .get("approvals")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let record = a.get("record");
        let same_source = record.and_then(|r| r.get("source")).and_then(Value::as_str)
            == Some(source_str(source));
        let revoked = !a.get("revoked").is_none_or(Value::is_null);
        if let (true, false, Some(n)) = (
            same_source,
            revoked,
            record.and_then(|r| r.get("name")).and_then(Value::as_str),
        ) {
            approved.push(n.to_owned());
        }
    }
    Ok(mirror::check_typosquat(
        name,
        &approved,
        &mirror::WellKnown::shipped(),
    ))
}

/// Shell-style matching: `*` any run of characters (`/` included, as `allow_patterns` does),
/// `?` any one character, everything else literally.
fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point: linear in practice, never exponential.
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

// ---- requests ------------------------------------------------------------------------------------------

/// `airlock requests list|show|approve|deny`.
pub fn requests(args: RequestsArgs) -> anyhow::Result<ExitCode> {
    refused_is_one((|| match args.what {
        RequestsCmd::List { server } => {
            let list: Vec<RequestRecord> =
                serde_json::from_value(Admin::new(&server)?.get("/admin/requests")?)
                    .context("the server's request list")?;
            print_requests(&list);
            Ok(ExitCode::SUCCESS)
        }
        RequestsCmd::Show { id, server } => {
            let v = Admin::new(&server)?.get(&request_path(&id)?)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
            Ok(ExitCode::SUCCESS)
        }
        RequestsCmd::Approve { id, signer, server } => {
            let admin = Admin::new(&server)?;
            let req: RequestRecord = serde_json::from_value(admin.get(&request_path(&id)?)?)
                .context("the server's request")?;
            approve_version(&admin, &signer, req.source, &req.name, &req.revision)
        }
        RequestsCmd::Deny {
            id,
            reason,
            by,
            server,
        } => {
            // Checked here too, so a too-long reason fails before anything is sent.
            signing::check_text("reason", &reason, signing::MAX_REASON)?;
            if let Some(by) = &by {
                signing::check_text("by", by, signing::MAX_WHO)?;
            }
            let mut body = serde_json::json!({ "reason": reason });
            if let Some(by) = by {
                body["by"] = Value::String(by);
            }
            let path = format!("{}/deny", request_path(&id)?);
            let v = Admin::new(&server)?.post_json(&path, &body)?;
            println!(
                "denied {} ({})",
                id,
                v.get("name").and_then(Value::as_str).unwrap_or("?")
            );
            Ok(ExitCode::SUCCESS)
        }
    })())
}

/// `/admin/requests/ID`, refusing ids that would change the path.
fn request_path(id: &str) -> anyhow::Result<String> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        bail!("{id:?} is not a request id (req-…)");
    }
    Ok(format!("/admin/requests/{id}"))
}

fn print_requests(list: &[RequestRecord]) {
    if list.is_empty() {
        println!("no requests");
        return;
    }
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|r| {
            [
                r.id.clone(),
                format!("{}:{}", source_str(r.source), r.name),
                r.revision.clone(),
                r.count.to_string(),
                serde_json::to_value(&r.status)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                r.clients.join(", "),
            ]
        })
        .collect();
    let head = ["ID", "NAME", "REVISION", "COUNT", "STATUS", "CLIENTS"];
    let mut width = head.map(str::len);
    for row in &rows {
        for (w, c) in width.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: [&str; 6]| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(width).enumerate() {
            // The last column is not padded: no trailing spaces.
            if i == 5 {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        println!("{}", s.trim_end());
    };
    line(head);
    for row in &rows {
        line([&row[0], &row[1], &row[2], &row[3], &row[4], &row[5]]);
    }
}

fn source_str(s: Source) -> &'static str {
    match s {
        Source::Hf => "hf",
        Source::Ollama => "ollama",
    }
}

// ---- revoke ----------------------------------------------------------------------------------------------

/// `airlock revoke APPROVAL --reason … --key … --by …`.
pub fn revoke(args: RevokeArgs) -> anyhow::Result<ExitCode> {
    refused_is_one((|| {
        let approval: ApprovalId = args
            .approval
            .parse()
            .with_context(|| format!("{:?}", args.approval))?;
        signing::check_text("reason", &args.reason, signing::MAX_REASON)?;
        signing::check_text("by", &args.by, signing::MAX_WHO)?;
        let key = read_key(&args.key)?;
        let admin = Admin::new(&args.server)?;
        let record = RevocationRecord {
            approval: approval.clone(),
            reason: args.reason.clone(),
            revoked_by: args.by.clone(),
            revoked_at: now()?,
        };
        let signed = sign(record, &key)?;
        admin.post_bytes("/admin/revocations", signed.to_json()?.into_bytes())?;
        if let Some(dir) = &args.out {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let path = signed.write_to_dir(dir)?;
            eprintln!("wrote {}", path.display());
        }
        println!("revoked {approval}");
        eprintln!("see who downloaded it: airlock audit downloads {approval}");
        Ok(ExitCode::SUCCESS)
    })())
}

// ---- audit -----------------------------------------------------------------------------------------------

pub(crate) fn data_dir(data: &DataArgs) -> anyhow::Result<PathBuf> {
    if let Some(d) = &data.data_dir {
        return Ok(d.clone());
    }
    let cfg = mirror::Config::load(data.config.as_deref(), |k| std::env::var(k).ok())?;
    Ok(cfg.data_dir)
}

fn log_path(log: Option<PathBuf>, data: &DataArgs) -> anyhow::Result<PathBuf> {
    match log {
        Some(l) => Ok(l),
        None => Ok(data_dir(data)?.join("audit.log")),
    }
}

/// `airlock audit verify|export|downloads`.
pub fn audit(args: AuditArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        AuditCmd::Verify { log, key, data } => {
            let path = log_path(log, &data)?;
            let keys = if key.is_empty() {
                // The current key and every retired one (`airlock rotate-key`); the log's
                // hand-overs decide which of them may sign where.
                let dir = data_dir(&data)?;
                let mut keys = vec![dir.join("mirror.pub")];
                let retired = dir.join(mirror::governance::rotate::RETIRED_DIR);
                if let Ok(entries) = std::fs::read_dir(&retired) {
                    let mut found: Vec<PathBuf> = entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| p.extension().is_some_and(|x| x == "pub"))
                        .collect();
                    found.sort();
                    keys.extend(found);
                }
                keys
            } else {
                key
            };
            let mut trusted = Vec::new();
            for k in &keys {
                trusted.push(
                    PublicKey::read(k)
                        .with_context(|| format!("reading the mirror key {}", k.display()))?,
                );
            }
            let outcome = signing::verify_log(&path, &trusted)?;
            match outcome.first_problem {
                None => {
                    print!("ok: {} entries", outcome.entries);
                    match outcome.head {
                        // The chain cannot show lines cut off the end; the head lets one compare.
                        Some(h) => println!(" (head: entry {} sha256 {})", h.seq, h.sha256),
                        None => println!(),
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Some(p) => {
                    println!(
                        "FAILED: {}: {p} ({} entries verified before it)",
                        path.display(),
                        outcome.entries
                    );
                    Ok(ExitCode::from(1))
                }
            }
        }
        AuditCmd::Export { since, log, data } => {
            let since = match since {
                Some(s) => Some(
                    s.parse::<Timestamp>()
                        .with_context(|| format!("--since {s:?}"))?,
                ),
                None => None,
            };
            let path = log_path(log, &data)?;
            use std::io::Write;
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            for line in signing::export_log(&path, since)? {
                writeln!(out, "{}", line?)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Recover { data } => {
            let dir = data_dir(&data)?;
            // The data directory's lock keeps a live server (the log's only writer) out.
            let _store =
                mirror::Store::open(&dir).with_context(|| format!("opening {}", dir.display()))?;
            let path = dir.join("audit.log");
            let Some(cut) = signing::cut_torn_tail(&path)? else {
                println!(
                    "{}: ends with a complete line; nothing to recover",
                    path.display()
                );
                return Ok(ExitCode::SUCCESS);
            };
            let key = signing::KeyPair::read_private(&dir.join("mirror.key"))
                .context("reading the mirror key")?;
            let log = signing::AuditLog::open(&path, key)?;
            log.append(
                &signing::AuditEvent::TornTailCut {
                    offset: cut.offset,
                    len: cut.len,
                    sha256: cut.sha256,
                },
                now()?,
            )?;
            println!(
                "{}: cut {} torn bytes at offset {} (saved to {}, sha256 {}); the cut is recorded in the log",
                path.display(),
                cut.len,
                cut.offset,
                cut.saved.display(),
                cut.sha256
            );
            Ok(ExitCode::SUCCESS)
        }
        AuditCmd::Downloads {
            approval,
            log,
            data,
        } => {
            let id: ApprovalId = approval.parse().with_context(|| format!("{approval:?}"))?;
            let path = log_path(log, &data)?;
            let downloads = signing::downloads_of(&path, &id)?;
            if downloads.is_empty() {
                println!("no downloads recorded under {id}");
                return Ok(ExitCode::SUCCESS);
            }
            println!("TIME  CLIENT  NAME  REVISION  FILE  SHA256");
            for e in &downloads {
                if let signing::AuditEvent::Download {
                    client,
                    name,
                    revision,
                    file,
                    digest,
                    ..
                } = &e.event
                {
                    println!("{}  {client}  {name}  {revision}  {file}  {digest}", e.time);
                }
            }
            eprintln!(
                "{} downloads under {id} (audit entries are not verified here: run `airlock audit verify`)",
                downloads.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

// ---- approvals export / import -----------------------------------------------------------------------

/// `airlock approvals export|import DIR`.
pub fn approvals(args: ApprovalsArgs) -> anyhow::Result<ExitCode> {
    match args.what {
        ApprovalsCmd::Export { dir, server, data } => export_approvals(&dir, &server, &data),
        ApprovalsCmd::Import { dir, server } => import_approvals(&dir, &server),
    }
}

fn export_approvals(dir: &Path, server: &ServerArgs, data: &DataArgs) -> anyhow::Result<ExitCode> {
    let admin = Admin::new(server)?;
    let list = admin.get("/admin/approvals")?;
    let entries = list
        .get("approvals")
        .and_then(Value::as_array)
        .ok_or_else(|| anyhow!("the server's approvals list has no `approvals` array"))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // The signed files live in the server's data dir; read them there when the list carries only
    // the records (the signature is needed for the export to be importable).
    let local = data_dir(data).ok().map(|d| d.join("approvals"));
    let mut written = 0;
    for e in entries {
        let id = e
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| anyhow!("an approval without an id in the server's list"))?;
        let id: ApprovalId = id.parse().with_context(|| format!("approval id {id:?}"))?;
        let approval: SignedApproval = match signed_text(e, "signed") {
            Some(text) => SignedApproval::from_json(text.as_bytes())?,
            None => SignedApproval::from_json(&read_local(&local, &format!("{id}.json"))?)?,
        };
        if approval.id()? != id {
            bail!("the signed file for {id} holds approval {}", approval.id()?);
        }
        approval.write_to_dir(dir)?;
        written += 1;
        if !e.get("revoked").is_none_or(Value::is_null) {
            let rev: SignedRevocation = match signed_text(e, "revocation_signed") {
                Some(text) => SignedRevocation::from_json(text.as_bytes())?,
                None => SignedRevocation::from_json(&read_local(
                    &local,
                    &format!("revocation-{id}.json"),
                )?)?,
            };
            rev.write_to_dir(dir)?;
            written += 1;
        }
    }
    println!("exported {written} record files to {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// A signed record the server's list may carry, as a JSON string or object.
fn signed_text(entry: &Value, field: &str) -> Option<String> {
    match entry.get(field)? {
        Value::String(s) => Some(s.clone()),
        v @ Value::Object(_) => Some(v.to_string()),
        _ => None,
    }
}

fn read_local(dir: &Option<PathBuf>, file: &str) -> anyhow::Result<Vec<u8>> {
    let Some(dir) = dir else {
        bail!("the server's list does not carry signed files; pass --data-dir to read {file}");
    };
    let path = dir.join(file);
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

fn import_approvals(dir: &Path, server: &ServerArgs) -> anyhow::Result<ExitCode> {
    let admin = Admin::new(server)?;
    let mut approvals = Vec::new();
    let mut revocations = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.starts_with('.') || !name.ends_with(".json") || !path.is_file() {
            continue;
        }
        if name.starts_with("revocation-") {
            revocations.push(path);
        } else {
            approvals.push(path);
        }
    }
    approvals.sort();
    revocations.sort();
    let mut rejected = 0;
    // Approvals first: a revocation names an approval the server must already know.
    for (path, route) in approvals
        .iter()
        .map(|p| (p, "/admin/approvals"))
        .chain(revocations.iter().map(|p| (p, "/admin/revocations")))
    {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        match admin.post_bytes(route, bytes) {
            Ok(v) => {
                let what = v
                    .get("id")
                    .or_else(|| v.get("approval"))
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                println!("imported {} ({what})", path.display());
            }
            Err(e) => match e.downcast_ref::<ServerError>() {
                Some(se) if matches!(se.status, 400 | 404) => {
                    println!("rejected {}: {}", path.display(), se.message);
                    rejected += 1;
                }
                _ => return Err(e),
            },
        }
    }
    let total = approvals.len() + revocations.len();
    println!("{} of {total} record files imported", total - rejected);
    Ok(if rejected == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.safetensors", "model.safetensors"));
        assert!(glob_match("*.safetensors", "sub/model.safetensors"));
        assert!(glob_match("config.json", "config.json"));
        assert!(glob_match("model-0000?.bin", "model-00001.bin"));
        assert!(!glob_match("*.json", "model.safetensors"));
        assert!(!glob_match("config.json", "xconfig.json"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a*b*c", "axxbyyc"));
        assert!(!glob_match("a*b*c", "axxbyy"));
    }

    #[test]
    fn ollama_names() {
        let s = |n: &str| split_ollama(n).unwrap();
        assert_eq!(s("llama3"), ("library/llama3".into(), "latest".into()));
        assert_eq!(s("llama3:8b"), ("library/llama3".into(), "8b".into()));
        assert_eq!(s("acme/m:q4"), ("acme/m".into(), "q4".into()));
        assert!(split_ollama(":x").is_err());
        assert!(split_ollama("m:").is_err());
    }

    #[test]
    fn request_paths() {
        assert_eq!(request_path("req-abc").unwrap(), "/admin/requests/req-abc");
        assert!(request_path("../approvals").is_err());
        assert!(request_path("a/b").is_err());
        assert!(request_path("").is_err());
    }
}
