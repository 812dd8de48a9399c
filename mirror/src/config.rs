//! Configuration: embedded defaults, an optional TOML file, then `AIRLOCK_*` environment overrides
//! (in that order of precedence, lowest first). Every key is documented in
//! `deploy/airlock.example.toml`.

use serde::Deserialize;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::error::MirrorError;

mod network;
pub use network::{RevokedKeyConfig, TlsConfig, UpstreamConfig};

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the index, blobs and quarantine live (one filesystem, so promotion is a rename).
    pub data_dir: PathBuf,
    /// The Hugging Face upstream.
    pub huggingface: HfConfig,
    /// The Ollama registry upstream.
    pub ollama: OllamaConfig,
    /// Who may pull what.
    pub policy: PolicyConfig,
    /// Signed approvals, review requests, the admin API.
    pub governance: GovernanceConfig,
    /// `[[trust]]` rules: which repos must carry which signature.
    pub trust: Vec<TrustRule>,
    /// The blob store.
    pub store: StoreConfig,
    /// Reverse proxies (addresses or CIDR blocks) whose `Forwarded` / `X-Forwarded-Host` /
    /// `X-Forwarded-Proto` headers are believed when Airlock builds URLs pointing back at itself.
    /// From anyone else those headers are ignored. `[governance] public_url`, when set, wins.
    pub trusted_proxies: Vec<ProxyNet>,
    /// Never contact an upstream: serve only what was imported (or fetched before), refuse the
    /// rest with a reason that says to export it from the connected mirror. Also implied when
    /// both upstreams are set to `""`.
    pub offline: bool,
    /// Air-gap bundles (`airlock export` / `airlock import`).
    pub airgap: AirgapConfig,
    /// How artifacts are fetched from upstream.
    pub fetch: FetchConfig,
    /// The model-file scanner.
    pub scan: ScanConfig,
    /// `[[clients]]`: named clients, each known by the sha256 of its token.
    pub clients: Vec<crate::clients::ClientEntry>,
    /// `[log]`: log format and level.
    pub log: crate::operations::LogConfig,
    /// `[metrics]`: who may read `/metrics`.
    pub metrics: crate::operations::MetricsConfig,
    /// `[tls]`: serve HTTPS.
    pub tls: TlsConfig,
    /// `[upstream]`: proxy and extra root certificates for every upstream client.
    pub upstream: UpstreamConfig,
}

/// `[store]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Keep the blobs under this many bytes: least-recently-served blobs that no approval or pin
    /// needs are evicted (and fetched again if asked for). None: no limit.
    pub max_bytes: Option<u64>,
    /// Where blobs live: `local` (under `data_dir/blobs`, the default) or `s3` (a bucket of an
    /// S3-compatible store; the quarantine, the index and the listings stay in `data_dir`).
    pub backend: StoreBackend,
    /// `s3`: the bucket (it must exist).
    pub bucket: Option<String>,
    /// `s3`: the endpoint URL of a self-hosted store (`http://127.0.0.1:3900`); unset: AWS.
    pub endpoint: Option<String>,
    /// `s3`: the region (Garage: its `s3_region`). Default `us-east-1`.
    pub region: Option<String>,
    /// `s3`: a file holding `aws_access_key_id = …` and `aws_secret_access_key = …` lines (the
    /// AWS credentials file format). Unset: `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    pub credentials_file: Option<PathBuf>,
    /// `s3`: a local directory holding verified copies of hot blobs, served as local files.
    /// Unset: every read goes to the bucket.
    pub cache_dir: Option<PathBuf>,
    /// `s3`: the cache's size limit (least recently served copies go first). Default 10 GiB.
    pub cache_max_bytes: Option<u64>,
}

/// `[store] backend`
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackend {
    /// A directory on the data disk.
    #[default]
    Local,
    /// An S3-compatible bucket.
    S3,
}

/// A trusted proxy: one address (`10.0.0.5`, `::1`) or a CIDR block (`10.0.0.0/8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ProxyNet(ipnet::IpNet);

impl TryFrom<String> for ProxyNet {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        if let Ok(net) = s.parse::<ipnet::IpNet>() {
            return Ok(ProxyNet(net));
        }
        s.parse::<std::net::IpAddr>()
            .map(|ip| ProxyNet(ipnet::IpNet::from(ip)))
            .map_err(|_| format!("trusted_proxies: {s:?} is not an IP address or CIDR block"))
    }
}

impl ProxyNet {
    /// Whether `ip` is this proxy (or inside this block).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
            v4 => v4,
        };
        self.0.contains(&ip)
    }
}

/// `[airgap]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AirgapConfig {
    /// Public keys (PEM, the exporting mirrors' `mirror.pub`) whose signature on a bundle manifest
    /// `airlock import` accepts. No key, no import.
    pub trusted_exporters: Vec<PathBuf>,
}

/// `[fetch]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FetchConfig {
    /// Parallel ranged connections per large artifact (1 = one stream). Files of one piece or
    /// less, and upstreams that ignore `Range`, always use one.
    pub connections: usize,
    /// A fetch that receives less than 1 KiB/s over this many seconds is failed (its waiting
    /// clients get a retryable error and the next request starts over).
    pub stall_timeout_secs: u64,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            connections: 8,
            stall_timeout_secs: 60,
        }
    }
}

/// `[scan]`: what the scanner admits beyond its built-in allowlist.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanConfig {
    /// The organisation's own pickle classes (`module.Class`), admitted in every pickle; each
    /// file that relies on one is recorded in the audit log. Names that can execute code are
    /// rejected at start-up.
    pub allow_globals: Vec<String>,
}

/// One `[[trust]]` rule. The first rule whose `match` covers a repo applies.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRule {
    /// `org/repo`, `org/*`, `datasets/org/repo`, `datasets/org/*` or `*`.
    #[serde(rename = "match")]
    pub pattern: String,
    /// `model-signing` (OpenSSF model signing, `model.sig`), `pgp` (a detached OpenPGP signature
    /// over a `sha256sum`-style list) or `none`.
    pub require: String,
    /// The signature file in the repo (default `model.sig`; `SHA256SUMS.asc` for pgp).
    pub signature: Option<String>,
    /// model-signing, key method: PEM public keys (ECDSA P-256/384/521).
    #[serde(default)]
    pub keys: Vec<PathBuf>,
    /// model-signing, certificate method: PEM trust anchors.
    #[serde(default)]
    pub cert_roots: Vec<PathBuf>,
    /// model-signing, keyless Sigstore: the certificate identity required…
    pub identity: Option<String>,
    /// …its OIDC issuer…
    pub issuer: Option<String>,
    /// …and the `trusted_root.json` (or ClientTrustConfig) to verify against, offline.
    pub trusted_root: Option<PathBuf>,
    /// pgp: keyring files (armored or binary).
    #[serde(default)]
    pub pgp_keys: Vec<PathBuf>,
    /// pgp: the signed `sha256sum`-style list in the repo (default `SHA256SUMS`).
    pub manifest: Option<String>,
}

/// `[governance]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GovernanceConfig {
    /// Public keys (PEM files) whose signatures on approval and revocation records are trusted.
    pub keys: Vec<PathBuf>,
    /// Keys revoked from a time: their records signed before it still count.
    pub revoked_keys: Vec<RevokedKeyConfig>,
    /// Bearer token of the admin API (`/admin/…`); no token, no admin API.
    pub admin_token: Option<Secret>,
    /// File holding the admin token (first line).
    pub admin_token_file: Option<PathBuf>,
    /// Base URL clients are told to find review requests at (default: `http://<listen>`).
    pub public_url: Option<String>,
    /// Fetch, verify and scan a requested (not yet approved) version in the background, so the
    /// reviewer sees the report (default true).
    pub prefetch_requests: Option<bool>,
    /// Largest version (total bytes) fetched in the background for a review request (default
    /// 2 GiB): any client can ask for any name, so this bounds what one request can make Airlock
    /// download. Larger versions are fetched when a reviewer runs `airlock approve`.
    pub prefetch_max_bytes: Option<u64>,
    /// Repeated downloads of one file by one client within this many seconds are audited as one
    /// `download` entry plus one `download_repeats` count (default 60; 0 audits every request).
    pub download_audit_window_secs: Option<u64>,
    /// New review requests one client may cause per hour (default 100); past it the client is
    /// refused as not approved and nothing is recorded.
    pub requests_per_client_hour: Option<usize>,
    /// Review-request records the mirror keeps at most (default 10000).
    pub max_requests: Option<usize>,
    /// Bytes that review-request prefetches may fetch per rolling day (default 20 GiB); past it
    /// requests are recorded but not prefetched.
    pub prefetch_quota_bytes: Option<u64>,
}

/// `[huggingface]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HfConfig {
    /// Base URL of the Hub (API and resolve routes).
    pub upstream: String,
    /// `host[:port]`s that upstream redirects may lead to, besides the upstream's own origin.
    /// A redirect anywhere else is refused, so a hostile or compromised upstream cannot turn Airlock
    /// into a proxy into the internal network.
    pub redirect_hosts: Vec<String>,
    /// Upstream token (sent upstream only). Prefer `token_file` or `AIRLOCK_HF_TOKEN`.
    pub token: Option<Secret>,
    /// File holding the upstream token (first line).
    pub token_file: Option<PathBuf>,
    /// How long a branch or tag → commit resolution is trusted before it is asked upstream again.
    /// Rules with a `revision` pin never move.
    pub revision_ttl_secs: u64,
    /// Entries per page of Airlock's own `/tree` listings (the Hub uses 1000).
    pub tree_page_size: usize,
}

/// `[ollama]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OllamaConfig {
    /// Base URL of the registry (the `/v2/` API).
    pub upstream: String,
    /// `host[:port]`s that upstream blob redirects may lead to, besides the upstream's own origin.
    pub redirect_hosts: Vec<String>,
    /// Upstream bearer token (sent upstream only).
    pub token: Option<Secret>,
    /// File holding the upstream token (first line).
    pub token_file: Option<PathBuf>,
    /// Base URL (`scheme://host[:port]`) that blob GETs are redirected to. ollama only accepts a
    /// blob answer that redirects to a *different hostname* than the one it asked, so this must
    /// name Airlock under a second DNS name (or its IP). Unset: Airlock redirects to the local
    /// address the connection arrived on (or `localhost` for `127.0.0.1`), which works without
    /// configuration unless a proxy or NAT sits in front.
    pub blob_url: Option<String>,
    /// How long a tag → manifest resolution is reused before asking upstream again. Pinned tags
    /// never move (drift is recorded instead).
    pub tag_ttl_secs: u64,
}

/// `[policy]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// `allowlist` (default): only what an allow rule matches; `open`: anything, still verified and
    /// scanned.
    pub mode: PolicyMode,
    /// `[[policy.allow]]` rules.
    pub allow: Vec<AllowRule>,
    /// Licences (as in a model card's `license:`) that may be approved without an override;
    /// empty means no licence policy.
    pub licenses: Vec<String>,
    /// Refuse clients that send no token, or one no `[[clients]]` entry knows (HF 401, OCI
    /// `UNAUTHORIZED`).
    pub require_client_token: bool,
}

/// Policy mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Only names matched by an allow rule are served.
    Allowlist,
    /// Every name may be fetched (verification and scanning still apply).
    Open,
}

/// One `[[policy.allow]]` rule: either `hf = …` or `ollama = …`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowRule {
    /// `org/repo`, `datasets/org/repo`, `org/*` or `datasets/org/*`.
    pub hf: Option<String>,
    /// Optional commit pin (40 hex) for an `hf` rule: every revision of the repo means this commit.
    pub revision: Option<String>,
    /// `namespace/model` or `namespace/*` (ollama registry names).
    pub ollama: Option<String>,
    /// Optional tag for an `ollama` rule: only this tag is approved.
    pub tag: Option<String>,
    /// Optional manifest digest pin (`sha256:…`) for an `ollama` rule with a `tag`.
    pub manifest: Option<String>,
    /// For an `hf` rule: serve pull-request refs (`refs/pr/N`). Off by default: anyone can open a
    /// pull request on any Hub repo, so its files are not the owner's.
    #[serde(default)]
    pub allow_pr_refs: bool,
}

/// A secret string whose `Debug` never shows the value, so it cannot leak into logs.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    /// The value, for the one place that sends it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("airlock-data"),
            huggingface: HfConfig::default(),
            ollama: OllamaConfig::default(),
            governance: GovernanceConfig::default(),
            trust: Vec::new(),
            policy: PolicyConfig::default(),
            store: StoreConfig::default(),
            trusted_proxies: Vec::new(),
            offline: false,
            airgap: AirgapConfig::default(),
            fetch: FetchConfig::default(),
            scan: ScanConfig::default(),
            clients: Vec::new(),
            log: Default::default(),
            metrics: Default::default(),
            tls: TlsConfig::default(),
            upstream: UpstreamConfig::default(),
        }
    }
}

impl Default for HfConfig {
    fn default() -> Self {
        HfConfig {
            upstream: "https://huggingface.co".into(),
            // Where the Hub sends LFS downloads today: its CDN and the Xet bridge that serves plain
            // HTTP bytes for Xet-backed files.
            redirect_hosts: [
                "cdn-lfs.huggingface.co",
                "cdn-lfs-us-1.huggingface.co",
                "cdn-lfs-eu-1.huggingface.co",
                "cdn-lfs.hf.co",
                "cdn-lfs-us-1.hf.co",
                "cdn-lfs-eu-1.hf.co",
                "cas-bridge.xethub.hf.co",
            ]
            .map(String::from)
            .to_vec(),
            token: None,
            token_file: None,
            revision_ttl_secs: 300,
            tree_page_size: 1000,
        }
    }
}

impl Default for OllamaConfig {
    fn default() -> Self {
        OllamaConfig {
            upstream: "https://registry.ollama.ai".into(),
            // registry.ollama.ai redirects blob downloads to its Cloudflare R2 bucket.
            redirect_hosts: vec!["dd20bb891979d25aebc8bec07b2b3bbc.r2.cloudflarestorage.com".into()],
            token: None,
            token_file: None,
            blob_url: None,
            tag_ttl_secs: 300,
        }
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            mode: PolicyMode::Allowlist,
            allow: Vec::new(),
            licenses: Vec::new(),
            require_client_token: false,
        }
    }
}

/// Environment variables read by [`Config::load`], with what each sets.
pub const ENV_KEYS: &[(&str, &str)] = &[
    ("AIRLOCK_LISTEN", "listen"),
    ("AIRLOCK_DATA_DIR", "data_dir"),
    (
        "AIRLOCK_TRUSTED_PROXIES",
        "trusted_proxies (comma-separated addresses or CIDR blocks)",
    ),
    ("AIRLOCK_HF_UPSTREAM", "huggingface.upstream"),
    (
        "AIRLOCK_HF_REDIRECT_HOSTS",
        "huggingface.redirect_hosts (comma-separated)",
    ),
    ("AIRLOCK_HF_TOKEN", "huggingface.token"),
    ("AIRLOCK_HF_TOKEN_FILE", "huggingface.token_file"),
    ("AIRLOCK_OLLAMA_UPSTREAM", "ollama.upstream"),
    (
        "AIRLOCK_OLLAMA_REDIRECT_HOSTS",
        "ollama.redirect_hosts (comma-separated)",
    ),
    ("AIRLOCK_OLLAMA_TOKEN", "ollama.token"),
    ("AIRLOCK_OLLAMA_TOKEN_FILE", "ollama.token_file"),
    ("AIRLOCK_OLLAMA_BLOB_URL", "ollama.blob_url"),
    ("AIRLOCK_POLICY_MODE", "policy.mode (allowlist|open)"),
    ("AIRLOCK_FETCH_CONNECTIONS", "fetch.connections"),
    (
        "AIRLOCK_FETCH_STALL_TIMEOUT_SECS",
        "fetch.stall_timeout_secs",
    ),
    ("AIRLOCK_ADMIN_TOKEN", "governance.admin_token"),
    ("AIRLOCK_ADMIN_TOKEN_FILE", "governance.admin_token_file"),
    ("AIRLOCK_PUBLIC_URL", "governance.public_url"),
    (
        "AIRLOCK_GOVERNANCE_KEYS",
        "governance.keys (comma-separated paths)",
    ),
    ("AIRLOCK_OFFLINE", "offline (true|false)"),
    (
        "AIRLOCK_TRUSTED_EXPORTERS",
        "airgap.trusted_exporters (comma-separated paths)",
    ),
];

impl Config {
    /// Defaults, then `file` if given, then the environment (`env` is injectable for tests).
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, MirrorError> {
        let mut cfg = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| MirrorError::Io {
                    path: path.to_owned(),
                    source,
                })?;
                toml::from_str::<Config>(&text).map_err(|e| {
                    MirrorError::Config(format!("{}: {}", path.display(), e.message()))
                })?
            }
            None => Config::default(),
        };
        if let Some(v) = env("AIRLOCK_LISTEN") {
            cfg.listen = v
                .parse()
                .map_err(|_| MirrorError::Config(format!("AIRLOCK_LISTEN: not an address: {v}")))?;
        }
        if let Some(v) = env("AIRLOCK_DATA_DIR") {
            cfg.data_dir = v.into();
        }
        if let Some(v) = env("AIRLOCK_TRUSTED_PROXIES") {
            cfg.trusted_proxies = split_list(&v)
                .into_iter()
                .map(|p| ProxyNet::try_from(p).map_err(MirrorError::Config))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = env("AIRLOCK_HF_UPSTREAM") {
            cfg.huggingface.upstream = v;
        }
        if let Some(v) = env("AIRLOCK_HF_REDIRECT_HOSTS") {
            cfg.huggingface.redirect_hosts = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect();
        }
        if let Some(v) = env("AIRLOCK_HF_TOKEN") {
            cfg.huggingface.token = Some(Secret(v));
        }
        if let Some(v) = env("AIRLOCK_HF_TOKEN_FILE") {
            cfg.huggingface.token_file = Some(v.into());
        }
        if let Some(v) = env("AIRLOCK_OLLAMA_UPSTREAM") {
            cfg.ollama.upstream = v;
        }
        if let Some(v) = env("AIRLOCK_OLLAMA_REDIRECT_HOSTS") {
            cfg.ollama.redirect_hosts = split_list(&v);
        }
        if let Some(v) = env("AIRLOCK_OLLAMA_TOKEN") {
            cfg.ollama.token = Some(Secret(v));
        }
        if let Some(v) = env("AIRLOCK_OLLAMA_TOKEN_FILE") {
            cfg.ollama.token_file = Some(v.into());
        }
        if let Some(v) = env("AIRLOCK_OLLAMA_BLOB_URL") {
            cfg.ollama.blob_url = Some(v);
        }
        if let Some(v) = env("AIRLOCK_FETCH_CONNECTIONS") {
            cfg.fetch.connections = v.parse().map_err(|_| {
                MirrorError::Config(format!("AIRLOCK_FETCH_CONNECTIONS: not a number: {v}"))
            })?;
        }
        if let Some(v) = env("AIRLOCK_FETCH_STALL_TIMEOUT_SECS") {
            cfg.fetch.stall_timeout_secs = v.parse().map_err(|_| {
                MirrorError::Config(format!(
                    "AIRLOCK_FETCH_STALL_TIMEOUT_SECS: not a number: {v}"
                ))
            })?;
        }
        if let Some(v) = env("AIRLOCK_ADMIN_TOKEN") {
            cfg.governance.admin_token = Some(Secret(v));
        }
        if let Some(v) = env("AIRLOCK_ADMIN_TOKEN_FILE") {
            cfg.governance.admin_token_file = Some(v.into());
        }
        if let Some(v) = env("AIRLOCK_PUBLIC_URL") {
            cfg.governance.public_url = Some(v);
        }
        if let Some(v) = env("AIRLOCK_GOVERNANCE_KEYS") {
            cfg.governance.keys = split_list(&v).into_iter().map(PathBuf::from).collect();
        }
        if let Some(v) = env("AIRLOCK_OFFLINE") {
            cfg.offline = match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => {
                    return Err(MirrorError::Config(format!(
                        "AIRLOCK_OFFLINE: expected true or false, got {v}"
                    )))
                }
            };
        }
        if let Some(v) = env("AIRLOCK_TRUSTED_EXPORTERS") {
            cfg.airgap.trusted_exporters = split_list(&v).into_iter().map(PathBuf::from).collect();
        }
        if let Some(v) = env("AIRLOCK_POLICY_MODE") {
            cfg.policy.mode = match v.as_str() {
                "allowlist" => PolicyMode::Allowlist,
                "open" => PolicyMode::Open,
                _ => {
                    return Err(MirrorError::Config(format!(
                        "AIRLOCK_POLICY_MODE: expected allowlist or open, got {v}"
                    )))
                }
            };
        }
        read_token(
            &mut cfg.huggingface.token,
            cfg.huggingface.token_file.as_deref(),
        )?;
        read_token(&mut cfg.ollama.token, cfg.ollama.token_file.as_deref())?;
        read_token(
            &mut cfg.governance.admin_token,
            cfg.governance.admin_token_file.as_deref(),
        )?;
        read_token(&mut cfg.metrics.token, cfg.metrics.token_file.as_deref())?;
        if let Some(u) = &cfg.governance.public_url {
            check_public_url(u)?;
        }
        // Checked at load, so a typo in a hash stops start-up instead of locking a client out.
        crate::clients::Clients::from_entries(&cfg.clients)?;
        if cfg.policy.require_client_token && cfg.clients.is_empty() {
            return Err(MirrorError::Config(
                "[policy] require_client_token = true needs at least one [[clients]] entry".into(),
            ));
        }
        if cfg.store.backend == StoreBackend::S3 && cfg.store.bucket.is_none() {
            return Err(MirrorError::Config(
                "[store] backend = \"s3\" needs a bucket".into(),
            ));
        }
        if !(1..=64).contains(&cfg.fetch.connections) {
            return Err(MirrorError::Config(format!(
                "fetch.connections must be between 1 and 64, got {}",
                cfg.fetch.connections
            )));
        }
        if cfg.fetch.stall_timeout_secs == 0 {
            return Err(MirrorError::Config(
                "fetch.stall_timeout_secs must be at least 1".into(),
            ));
        }
        Ok(cfg)
    }
}

/// `public_url` goes into headers and redirects: an http(s) origin (optionally with a path
/// prefix), nothing that could smuggle a query, a fragment or credentials.
fn check_public_url(u: &str) -> Result<(), MirrorError> {
    let bad = |why: &str| MirrorError::Config(format!("[governance] public_url = {u:?}: {why}"));
    let parsed = url::Url::parse(u).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("needs a host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() || !parsed.username().is_empty() {
        return Err(bad("no query, fragment or credentials"));
    }
    if u.chars()
        .any(|c| c.is_control() || c == ' ' || c == '<' || c == '>' || c == '"')
    {
        return Err(bad("contains characters not allowed in a URL"));
    }
    Ok(())
}

impl Config {
    /// Whether Airlock must never contact an upstream: `offline = true`, or no upstream at all.
    pub fn is_offline(&self) -> bool {
        self.offline || (self.huggingface.upstream.is_empty() && self.ollama.upstream.is_empty())
    }
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Fills `token` from `file` (first line) unless a token was given directly.
fn read_token(token: &mut Option<Secret>, file: Option<&Path>) -> Result<(), MirrorError> {
    if let (None, Some(path)) = (token.as_ref(), file) {
        let text = std::fs::read_to_string(path).map_err(|source| MirrorError::Io {
            path: path.to_owned(),
            source,
        })?;
        let value = text.lines().next().unwrap_or("").trim().to_owned();
        if value.is_empty() {
            return Err(MirrorError::Config(format!(
                "{}: token file is empty",
                path.display()
            )));
        }
        *token = Some(Secret(value));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_proxies_and_public_url_are_checked() {
        let net = ProxyNet::try_from("10.0.0.0/8".to_owned()).unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        let one = ProxyNet::try_from("::1".to_owned()).unwrap();
        assert!(one.contains("::1".parse().unwrap()));
        assert!(ProxyNet::try_from("10.0.0.0/33".to_owned()).is_err());
        assert!(ProxyNet::try_from("proxy.example".to_owned()).is_err());
        let env =
            |v: &'static str| move |k: &str| (k == "AIRLOCK_PUBLIC_URL").then(|| v.to_owned());
        assert!(Config::load(None, env("https://airlock.example/prefix/")).is_ok());
        for bad in [
            "javascript:alert(1)",
            "https://a.example/?q=1",
            "https://u:p@a.example",
            "ftp://a",
        ] {
            assert!(Config::load(None, env(bad)).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn store_backend_s3_needs_a_bucket_and_local_stays_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.toml");
        assert_eq!(
            Config::load(None, |_| None).unwrap().store.backend,
            StoreBackend::Local
        );
        std::fs::write(&path, "[store]\nbackend = \"s3\"\n").unwrap();
        let err = Config::load(Some(&path), |_| None).unwrap_err().to_string();
        assert!(err.contains("needs a bucket"), "{err}");
        std::fs::write(
            &path,
            "[store]\nbackend = \"s3\"\nbucket = \"b\"\nendpoint = \"http://127.0.0.1:3900\"\n",
        )
        .unwrap();
        let cfg = Config::load(Some(&path), |_| None).unwrap();
        assert_eq!(cfg.store.backend, StoreBackend::S3);
        assert_eq!(cfg.store.bucket.as_deref(), Some("b"));
        std::fs::write(&path, "[store]\nbackend = \"ftp\"\n").unwrap();
        assert!(Config::load(Some(&path), |_| None).is_err());
    }

    #[test]
    fn defaults_need_no_file() {
        let cfg = Config::load(None, |_| None).unwrap();
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg.data_dir, PathBuf::from("airlock-data"));
        assert_eq!(cfg.policy.mode, PolicyMode::Allowlist);
        assert_eq!(cfg.huggingface.upstream, "https://huggingface.co");
    }

    #[test]
    fn file_then_env() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\n[huggingface]\nupstream = \"http://127.0.0.1:1\"\ntoken = \"s3cret\"\n\
             [[policy.allow]]\nhf = \"acme/*\"\nrevision = \"0123456789abcdef0123456789abcdef01234567\"\n",
        )
        .unwrap();
        let cfg = Config::load(Some(&path), |k| {
            (k == "AIRLOCK_POLICY_MODE").then(|| "open".to_string())
        })
        .unwrap();
        assert_eq!(cfg.listen.port(), 9000);
        assert_eq!(cfg.policy.mode, PolicyMode::Open);
        assert_eq!(cfg.policy.allow.len(), 1);
        assert!(
            !format!("{cfg:?}").contains("s3cret"),
            "token leaked into Debug"
        );
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.toml");
        std::fs::write(&path, "lisen = \"x\"\n").unwrap();
        assert!(Config::load(Some(&path), |_| None).is_err());
    }
}
