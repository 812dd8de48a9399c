//! `ollama-pull`: a test client that pulls a model from a registry the way `ollama pull` does
//! (classic GGUF path of ollama at fb30760, `shared/docs/ollama-protocol.md` §1.3), so the
//! integration tests can hold Airlock to ollama's rules without an ollama binary.
//!
//! 1. `GET /v2/<ns>/<model>/manifests/<tag>` with only the docker-v2 `Accept`, no HEAD first. A 404
//!    reads `file does not exist`; any other status ≥ 400 shows `<code>: <raw body>`.
//! 2. For each layer, then the config: `HEAD` the blob (redirects followed) and take its size from
//!    `Content-Length`; plan parts of `size/16` clamped to [min part, 1000 MB]; ONE `GET` that
//!    follows redirects only while the hostname stays the same (port ignored) and must end in a
//!    `307` or `200` carrying `Location`; then up to 16 parallel `GET <Location>` with `Range`, sent
//!    by a separate plain client (no `Authorization`, Go's default User-Agent, redirects followed),
//!    whose status is NOT checked: each part copies exactly its length from whatever body arrives.
//! 3. The sha256 of each blob must equal its digest. Blobs go to `<out>/sha256-<hex>` (an existing
//!    file is a cache hit, as in ollama), the manifest bytes to `<out>/manifest`.
//!
//! A part that sees no byte for 30 s is re-sent at once, without counting as a retry, as ollama
//! does (download.go: `errPartStalled` → `try--`): that is what lets a slow cold fetch finish.
//! With `--key FILE` (the hex of a 32-byte ed25519 seed; `--print-public-key` prints its
//! `ssh-ed25519 …` line), a 401 with `WWW-Authenticate: Bearer realm=…` runs ollama's token flow
//! (auth.go, §1.5): `GET <realm>?nonce=…&scope=…&service=…&ts=…` with
//! `Authorization: <base64 SSH public key>:<base64 signature over "GET,<url>,<base64(hex(sha256("")))>">`,
//! then the request again with `Authorization: Bearer <token>`, which every later registry request
//! carries (the Range parts do not, as in ollama).
//! Deliberate differences from ollama: no resume files, and a part that fails
//! otherwise is not retried (ollama retries 6 times with 2^n s backoff, which would only slow
//! failing tests down).
//! `--min-part-size` lowers ollama's 100 MB minimum so that small test blobs still split into 16.
//! Over https the roots are the bundled ones, or, when `SSL_CERT_FILE` names a PEM file, exactly
//! the certificates in it: how Go (and so ollama) on Linux replaces the system roots.
//!
//! Exit codes: 0 pulled, 1 the pull failed (`Error: …` on stderr), 2 bad usage.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{stream, StreamExt, TryStreamExt};
use reqwest::{header, redirect, Client, Response, StatusCode, Url};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};

const USAGE: &str = "usage: ollama-pull [--insecure] [--min-part-size N] [--out DIR] [--key FILE] HOST:PORT/NS/MODEL[:TAG]\n       ollama-pull --key FILE --print-public-key";
/// The only `Accept` ollama sends for a manifest (images.go:1276).
const MANIFEST_ACCEPT: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Shaped like ollama's (`ollama/<ver> (<arch> <os>) Go/<gover>`), so server logs tell it apart.
const OLLAMA_USER_AGENT: &str = "ollama/0.0.0-test (amd64 linux) Go/go1.24.0";
/// What Go's `http.DefaultClient` sends: the Range parts carry no ollama User-Agent.
const GO_USER_AGENT: &str = "Go-http-client/1.1";
/// download.go: numDownloadParts, minDownloadPartSize, maxDownloadPartSize (decimal MB).
const PARTS: u64 = 16;
const MIN_PART: u64 = 100 * 1000 * 1000;
const MAX_PART: u64 = 1000 * 1000 * 1000;
/// ollama resolves the direct URL under a 30 s context, retrying failures with backoff.
const DIRECT_URL_DEADLINE: Duration = Duration::from_secs(30);
/// ollama treats a part as stalled after 30 s without a byte.
const STALL: Duration = Duration::from_secs(30);

/// A model name as ollama's `ParseNameBare` splits it; all three parts are required for a mirror.
#[derive(Debug, PartialEq)]
struct Name {
    host: String,
    namespace: String,
    model: String,
    tag: String,
}

impl Name {
    fn parse(s: &str) -> Result<Name, String> {
        // The scheme is dropped by ollama (only --insecure selects http), so it is refused here.
        if s.contains("://") {
            return Err(format!("{s:?}: no scheme; use --insecure for plain http"));
        }
        let (rest, tag) = match (s.rfind(':'), s.rfind('/')) {
            (Some(c), Some(sl)) if c > sl => (&s[..c], &s[c + 1..]),
            _ => (s, "latest"),
        };
        let mut parts = rest.rsplitn(3, '/');
        let (model, namespace, host) = (parts.next(), parts.next(), parts.next());
        let (Some(model), Some(namespace), Some(host)) = (model, namespace, host) else {
            return Err(format!(
                "{s:?}: a mirror name needs host/namespace/model[:tag]"
            ));
        };
        let ok = |p: &str, extra: &str| {
            !p.is_empty()
                && p.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || extra.contains(c))
        };
        if !ok(host, ".:-") || !ok(namespace, "-") || !ok(model, ".-") || !ok(tag, ".-") {
            return Err(format!("{s:?}: invalid model name"));
        }
        Ok(Name {
            host: host.into(),
            namespace: namespace.into(),
            model: model.into(),
            tag: tag.into(),
        })
    }
}

#[derive(Debug)]
struct Args {
    insecure: bool,
    min_part: u64,
    out: PathBuf,
    name: Name,
    key: Option<PathBuf>,
}

/// ollama's identity: an ed25519 key (`~/.ollama/id_ed25519`; here a hex seed file).
struct Signer(ed25519_dalek::SigningKey);

impl Signer {
    fn load(path: &Path) -> Result<Signer> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let seed: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| anyhow!("{}: not 64 hex digits", path.display()))?;
        Ok(Signer(ed25519_dalek::SigningKey::from_bytes(&seed)))
    }

    /// The SSH wire form of the public key, base64 (the middle field of an `.pub` line).
    fn public_b64(&self) -> String {
        use base64::Engine;
        let mut wire = Vec::new();
        for part in [&b"ssh-ed25519"[..], &self.0.verifying_key().to_bytes()[..]] {
            wire.extend_from_slice(&(part.len() as u32).to_be_bytes());
            wire.extend_from_slice(part);
        }
        base64::engine::general_purpose::STANDARD.encode(wire)
    }

    /// auth.Sign: `<public key>:<base64 signature>`.
    fn sign(&self, data: &[u8]) -> String {
        use base64::Engine;
        use ed25519_dalek::Signer as _;
        let sig = self.0.sign(data).to_bytes();
        format!(
            "{}:{}",
            self.public_b64(),
            base64::engine::general_purpose::STANDARD.encode(sig)
        )
    }
}

/// The parameters of `WWW-Authenticate: Bearer realm="…",service="…",scope="…"`.
fn bearer_challenge(value: &str) -> Option<(String, String, String)> {
    let rest = value.strip_prefix("Bearer ")?;
    let mut realm = None;
    let (mut service, mut scope) = (String::new(), String::new());
    for kv in rest.split(',') {
        let (k, v) = kv.trim().split_once('=')?;
        let v = v.trim_matches('"').to_owned();
        match k {
            "realm" => realm = Some(v),
            "service" => service = v,
            "scope" => scope = v,
            _ => {}
        }
    }
    Some((realm?, service, scope))
}

/// url.QueryEscape, for the few characters these values can hold.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn parse_args(mut it: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut insecure, mut min_part, mut out, mut name) =
        (false, MIN_PART, PathBuf::from("."), None);
    let mut key = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--insecure" => insecure = true,
            "--min-part-size" => {
                let v = it.next().ok_or("--min-part-size needs a value")?;
                min_part = v
                    .parse()
                    .map_err(|_| format!("--min-part-size: {v:?} is not a number"))?;
                if min_part == 0 || min_part > MAX_PART {
                    return Err(format!("--min-part-size must be in 1..={MAX_PART}"));
                }
            }
            "--out" => out = it.next().ok_or("--out needs a directory")?.into(),
            "--key" => key = Some(PathBuf::from(it.next().ok_or("--key needs a file")?)),
            "--print-public-key" => {
                let path = key.as_ref().ok_or("--print-public-key needs --key first")?;
                let signer = Signer::load(path).map_err(|e| format!("{e:#}"))?;
                println!("ssh-ed25519 {}", signer.public_b64());
                std::process::exit(0);
            }
            "-h" | "--help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option {s}")),
            s if name.is_none() => name = Some(Name::parse(s)?),
            s => return Err(format!("unexpected argument {s:?}")),
        }
    }
    Ok(Args {
        insecure,
        min_part,
        out,
        name: name.ok_or("no model name given")?,
        key,
    })
}

/// The part plan of download.go: `total/16` clamped to [min, 1000 MB]; the last part takes the rest.
fn plan_parts(total: u64, min_part: u64) -> Vec<(u64, u64)> {
    let size = (total / PARTS).clamp(min_part, MAX_PART);
    let mut parts = Vec::new();
    let mut offset = 0;
    while offset < total {
        let len = size.min(total - offset);
        parts.push((offset, len));
        offset += len;
    }
    parts
}

/// `^sha256[:-][0-9a-fA-F]{64}$` (manifest/paths.go), returned as lowercase hex.
fn digest_hex(digest: &str) -> Result<String> {
    let hex = digest
        .strip_prefix("sha256:")
        .or_else(|| digest.strip_prefix("sha256-"))
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| anyhow!("invalid digest format"))?;
    Ok(hex.to_ascii_lowercase())
}

/// makeRequestWithRetry's error mapping: 404 is `os.ErrNotExist`, other statuses ≥ 400 show the
/// raw body.
async fn check(resp: Response) -> Result<Response> {
    let status = resp.status();
    if status == StatusCode::NOT_FOUND {
        bail!("file does not exist");
    }
    if status == StatusCode::UNAUTHORIZED {
        let body = resp.text().await.unwrap_or_default();
        bail!("401 (unauthorized; --key runs ollama's token flow): {body}");
    }
    if status.as_u16() >= 400 {
        let body = resp.text().await.unwrap_or_default();
        bail!("{}: {body}", status.as_u16());
    }
    Ok(resp)
}

/// Sends a GET or HEAD, retrying once when a reused keep-alive connection turns out to have been
/// closed by the server before any response byte arrived. Go's `http.Transport` (and so ollama) does
/// this for idempotent requests; hyper does not, and servers close idle connections on their own
/// schedule (actix after 5 s), so without it a pull fails on a race that ollama never sees.
async fn send(req: reqwest::RequestBuilder) -> reqwest::Result<Response> {
    let again = req.try_clone();
    match (req.send().await, again) {
        (Err(e), Some(again)) if closed_before_response(&e) => again.send().await,
        (other, _) => other,
    }
}

fn closed_before_response(e: &reqwest::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(e);
    while let Some(err) = source {
        if err
            .to_string()
            .contains("connection closed before message completed")
        {
            return true;
        }
        source = err.source();
    }
    false
}

struct Puller {
    base: Url,
    name: Name,
    out: PathBuf,
    min_part: u64,
    /// Manifest and HEAD requests: Go's default redirect policy (up to 10).
    registry: Client,
    /// The one blob GET: stops at the first redirect to another hostname.
    resolver: Client,
    /// The Range parts: `http.DefaultClient`.
    plain: Client,
    /// `--key`: ollama's token flow on a 401.
    signer: Option<Signer>,
    /// The registry token, once the flow has run (regOpts.Token).
    token: std::sync::Mutex<Option<String>>,
}

impl Puller {
    fn new(args: Args) -> Result<Puller> {
        let scheme = if args.insecure { "http" } else { "https" };
        let base =
            Url::parse(&format!("{scheme}://{}/", args.name.host)).context("registry URL")?;
        let roots = match std::env::var_os("SSL_CERT_FILE") {
            Some(path) => {
                let pem = std::fs::read(&path)
                    .with_context(|| format!("SSL_CERT_FILE {}", Path::new(&path).display()))?;
                Some(reqwest::Certificate::from_pem_bundle(&pem).context("SSL_CERT_FILE")?)
            }
            None => None,
        };
        let builder = || {
            let b = Client::builder();
            match &roots {
                Some(certs) => certs.iter().fold(b.tls_built_in_root_certs(false), |b, c| {
                    b.add_root_certificate(c.clone())
                }),
                None => b,
            }
        };
        let registry = builder()
            .user_agent(OLLAMA_USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(STALL)
            .build()?;
        let resolver = builder()
            .user_agent(OLLAMA_USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(STALL)
            .redirect(redirect::Policy::custom(|attempt| {
                let first = attempt
                    .previous()
                    .first()
                    .and_then(|u| u.host_str())
                    .map(str::to_owned);
                if attempt.previous().len() > 10 {
                    attempt.error("stopped after 10 redirects")
                } else if attempt.url().host_str().map(str::to_owned) == first {
                    attempt.follow()
                } else {
                    // http.ErrUseLastResponse: keep the redirect response itself.
                    attempt.stop()
                }
            }))
            .build()?;
        let plain = builder()
            .user_agent(GO_USER_AGENT)
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(STALL)
            .build()?;
        let signer = args.key.as_deref().map(Signer::load).transpose()?;
        Ok(Puller {
            base,
            name: args.name,
            out: args.out,
            min_part: args.min_part,
            registry,
            resolver,
            plain,
            signer,
            token: std::sync::Mutex::new(None),
        })
    }

    /// Adds the registry token, if there is one.
    fn authed(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self.token.lock().map(|t| t.clone()) {
            Ok(Some(t)) => req.bearer_auth(t),
            _ => req,
        }
    }

    /// getAuthorizationToken: the signed token request to the challenge's realm.
    async fn fetch_token(&self, challenge: &str) -> Result<()> {
        let signer = self
            .signer
            .as_ref()
            .ok_or_else(|| anyhow!("no --key for the token flow"))?;
        let (realm, service, scope) =
            bearer_challenge(challenge).ok_or_else(|| anyhow!("bad challenge {challenge:?}"))?;
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let nonce = hex::encode(&Sha256::digest(format!("{ts}{:?}", Instant::now()))[..16]);
        // url.Values.Encode: keys sorted.
        let url = format!(
            "{realm}?nonce={}&scope={}&service={}&ts={ts}",
            query_escape(&nonce),
            query_escape(&scope),
            query_escape(&service)
        );
        let empty = hex::encode(Sha256::digest(b""));
        let data = {
            use base64::Engine;
            format!(
                "GET,{url},{}",
                base64::engine::general_purpose::STANDARD.encode(empty)
            )
        };
        let resp = send(
            self.registry
                .get(&url)
                .header(header::AUTHORIZATION, signer.sign(data.as_bytes())),
        )
        .await
        .with_context(|| format!("GET {url}"))?;
        let resp = check(resp).await?;
        let doc: serde_json::Value =
            serde_json::from_slice(&resp.bytes().await?).context("token response is not JSON")?;
        let token = doc["token"]
            .as_str()
            .ok_or_else(|| anyhow!("token response without a token"))?;
        if let Ok(mut t) = self.token.lock() {
            *t = Some(token.to_owned());
        }
        Ok(())
    }

    fn url(&self, kind: &str, reference: &str) -> Result<Url> {
        let n = &self.name;
        Ok(self.base.join(&format!(
            "v2/{}/{}/{kind}/{reference}",
            n.namespace, n.model
        ))?)
    }

    async fn pull(&self) -> Result<()> {
        println!("pulling manifest");
        let manifest = self
            .manifest()
            .await
            .map_err(|e| anyhow!("pull model manifest: {e:#}"))?;
        let doc: serde_json::Value =
            serde_json::from_slice(&manifest).context("manifest is not JSON")?;
        let layers = doc["layers"].as_array().cloned().unwrap_or_default();
        // ollama: `layers = append(manifest.Layers, manifest.Config)`.
        let mut digests = Vec::new();
        for d in layers.iter().chain(std::iter::once(&doc["config"])) {
            let digest = d["digest"]
                .as_str()
                .ok_or_else(|| anyhow!("manifest entry without a digest"))?;
            digests.push(digest.to_owned());
        }
        tokio::fs::create_dir_all(&self.out)
            .await
            .with_context(|| format!("creating {}", self.out.display()))?;
        for digest in &digests {
            self.blob(digest).await?;
        }
        println!("verifying sha256 digest");
        println!("writing manifest");
        tokio::fs::write(self.out.join("manifest"), &manifest)
            .await
            .context("writing the manifest")?;
        println!("success");
        Ok(())
    }

    async fn manifest(&self) -> Result<Vec<u8>> {
        let url = self.url("manifests", &self.name.tag)?;
        let get = || {
            self.authed(
                self.registry
                    .get(url.clone())
                    .header(header::ACCEPT, MANIFEST_ACCEPT),
            )
        };
        let mut resp = send(get()).await.with_context(|| format!("GET {url}"))?;
        // makeRequestWithRetry: one token flow on a 401, then the request again.
        if resp.status() == StatusCode::UNAUTHORIZED && self.signer.is_some() {
            let challenge = resp
                .headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            self.fetch_token(&challenge).await?;
            resp = send(get()).await.with_context(|| format!("GET {url}"))?;
        }
        Ok(check(resp).await?.bytes().await?.to_vec())
    }

    async fn blob(&self, digest: &str) -> Result<()> {
        let hex = digest_hex(digest)?;
        let path = self.out.join(format!("sha256-{hex}"));
        if tokio::fs::try_exists(&path).await? {
            println!("pulling {}: cached", &hex[..12]);
            return Ok(());
        }
        let url = self.url("blobs", digest)?;
        // a. HEAD for the size; a missing Content-Length means 0 (and a certain digest mismatch).
        let head = send(self.authed(self.registry.head(url.clone())))
            .await
            .with_context(|| format!("HEAD {url}"))?;
        let head = check(head).await?;
        let total: u64 = head
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let parts = plan_parts(total, self.min_part);
        // c. the one GET that yields the direct URL.
        let direct = self.direct_url(&url).await?;
        println!(
            "pulling {}: {total} bytes in {} parts from {direct}",
            &hex[..12],
            parts.len()
        );
        // d. the parts, in parallel, into a file that becomes the blob only once its hash is right.
        let partial = self.out.join(format!("sha256-{hex}-partial"));
        let file = tokio::fs::File::create(&partial).await?;
        file.set_len(total).await?;
        drop(file);
        let statuses: Vec<u16> = stream::iter(parts.iter().copied())
            .map(|(start, len)| self.part(&direct, &partial, start, len))
            .buffer_unordered(PARTS as usize)
            .try_collect()
            .await
            .inspect_err(|_| {
                let _ = std::fs::remove_file(&partial);
            })?;
        println!("  part statuses: {}", summarize(&statuses));
        // 3. verify
        let got = sha256_file(&partial).await?;
        if got != hex {
            let _ = tokio::fs::remove_file(&partial).await;
            bail!(
                "digest mismatch, file must be downloaded again: want {digest}, got sha256:{got}"
            );
        }
        tokio::fs::rename(&partial, &path).await?;
        Ok(())
    }

    /// download.go:250-272: retried with backoff under a 30 s deadline; the final answer must be a
    /// 307 or 200 and carry `Location`, resolved against the last request URL.
    async fn direct_url(&self, url: &Url) -> Result<Url> {
        let deadline = Instant::now() + DIRECT_URL_DEADLINE;
        let mut n: u32 = 0;
        loop {
            let answer = match send(self.authed(self.resolver.get(url.clone()))).await {
                Ok(resp) => check(resp).await,
                Err(e) => Err(anyhow::Error::new(e).context(format!("GET {url}"))),
            };
            match answer {
                Ok(resp) => {
                    let status = resp.status();
                    if status != StatusCode::TEMPORARY_REDIRECT && status != StatusCode::OK {
                        bail!("unexpected status code {}", status.as_u16());
                    }
                    let Some(loc) = resp.headers().get(header::LOCATION) else {
                        bail!("http: no Location header in response");
                    };
                    let loc = loc.to_str().context("Location is not text")?;
                    // The body is closed unread, as in ollama.
                    return resp
                        .url()
                        .join(loc)
                        .with_context(|| format!("bad Location {loc:?}"));
                }
                Err(e) => {
                    n += 1;
                    // newBackoff(10s): n² × 10 ms, at most 10 s (ollama adds ±50 % jitter).
                    let wait =
                        Duration::from_millis(10 * u64::from(n * n)).min(Duration::from_secs(10));
                    if Instant::now() + wait > deadline {
                        // ollama logs each failure (slog.Warn, server log) and reports only the
                        // context's error: a refusal's body never reaches the user from here.
                        eprintln!("failed to get direct URL; giving up: {e:#}");
                        bail!("context deadline exceeded");
                    }
                    eprintln!("failed to get direct URL; backing off and retrying: {e:#}");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// One `Range` part, re-sent while it stalls (no byte for [`STALL`]), as ollama does.
    async fn part(&self, url: &Url, path: &Path, start: u64, len: u64) -> Result<u16> {
        loop {
            match self.part_once(url, path, start, len).await {
                Err(e) if is_stall(&e) => {
                    eprintln!("part {start}+{len} stalled; retrying");
                }
                other => return other,
            }
        }
    }

    /// One attempt at a part. The status is not checked: like ollama's `io.CopyN`, this copies
    /// exactly `len` bytes from whatever body arrives, and fewer bytes is an error.
    async fn part_once(&self, url: &Url, path: &Path, start: u64, len: u64) -> Result<u16> {
        let end = start + len - 1;
        let req = self
            .plain
            .get(url.clone())
            .header(header::RANGE, format!("bytes={start}-{end}"));
        let resp = send(req)
            .await
            .with_context(|| format!("part {start}-{end}"))?;
        let status = resp.status().as_u16();
        let mut file = tokio::fs::OpenOptions::new().write(true).open(path).await?;
        file.seek(std::io::SeekFrom::Start(start)).await?;
        let mut body = resp.bytes_stream();
        let mut left = len;
        while left > 0 {
            let Some(chunk) = body.next().await else {
                break;
            };
            let chunk = chunk.with_context(|| format!("part {start}-{end}"))?;
            let take = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            file.write_all(&chunk[..take]).await?;
            left -= take as u64;
        }
        if left > 0 {
            bail!(
                "part {start}-{end}: unexpected EOF after {} of {len} bytes (status {status})",
                len - left
            );
        }
        file.flush().await?;
        Ok(status)
    }
}

/// Whether an attempt failed because no byte came for [`STALL`] (the client's read timeout).
fn is_stall(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<reqwest::Error>()
            .is_some_and(reqwest::Error::is_timeout)
    })
}

/// `206 ×16` or `200 ×1, 206 ×15`.
fn summarize(statuses: &[u16]) -> String {
    let mut counts = std::collections::BTreeMap::new();
    for s in statuses {
        *counts.entry(*s).or_insert(0) += 1;
    }
    counts
        .iter()
        .map(|(s, n)| format!("{s} x{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn sha256_file(path: &Path) -> Result<String> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::File::open(&path)?;
        let mut h = Sha256::new();
        std::io::copy(&mut f, &mut h)?;
        Ok(hex::encode(h.finalize()))
    })
    .await?
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("Error: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let outcome = match Puller::new(args) {
        Ok(p) => p.pull().await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_like_ollama() {
        let n = Name::parse("127.0.0.1:8080/library/tiny:q4").unwrap();
        assert_eq!(
            n,
            Name {
                host: "127.0.0.1:8080".into(),
                namespace: "library".into(),
                model: "tiny".into(),
                tag: "q4".into()
            }
        );
        assert_eq!(
            Name::parse("mirror:8080/library/llama3").unwrap().tag,
            "latest"
        );
        // `mirror:8080` would become the namespace, which is invalid in ollama too.
        assert!(Name::parse("mirror:8080/llama3:8b").is_err());
        assert!(Name::parse("http://mirror/library/m").is_err());
        assert!(Name::parse("mirror/library/m@sha256:00").is_err());
    }

    #[test]
    fn parts_follow_download_go() {
        // A 1 GiB blob gives 11 parts of 100 MB (the last one shorter).
        let p = plan_parts(1 << 30, MIN_PART);
        assert_eq!(p.len(), 11);
        assert_eq!(p[10], (1_000_000_000, (1 << 30) - 1_000_000_000));
        // 5 GB: 16 parts of 312.5 MB.
        assert_eq!(plan_parts(5_000_000_000, MIN_PART).len(), 16);
        // Small blobs: one part, unless the minimum is lowered.
        assert_eq!(plan_parts(146, MIN_PART), vec![(0, 146)]);
        assert_eq!(plan_parts(1600, 1).len(), 16);
        assert_eq!(plan_parts(1605, 1).len(), 17);
        assert!(plan_parts(0, MIN_PART).is_empty());
    }

    #[test]
    fn digests_are_checked() {
        let h = "A".repeat(64);
        assert_eq!(digest_hex(&format!("sha256:{h}")).unwrap(), "a".repeat(64));
        assert!(digest_hex("sha512:00").is_err());
        assert!(digest_hex(&format!("sha256:{}", "g".repeat(64))).is_err());
    }
}
