//! The Hugging Face Hub as an upstream: resolve a revision, list a commit's files, open a file's
//! bytes (optionally from an offset, to resume).

use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use reqwest::{header, StatusCode};
use url::Url;
use verifier::{Digest, GitOid};

use super::{describe, read_limited, retry_after, FileResponse, OpenError};
use crate::config::HfConfig;
use crate::config::Secret;
use crate::error::MirrorError;
use crate::manifest::{Entry, EntryKind, Lfs, Manifest};
use crate::names::{HfRepo, RepoPath, Revision, RevisionName};

/// Characters escaped in one path segment (`/` included: `refs/pr/1` travels as one segment).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');
/// Characters escaped in a file path (keeps `/`).
const PATH: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'?')
    .add(b'<')
    .add(b'>')
    .add(b'`')
    .add(b'{')
    .add(b'}');

const MAX_JSON: usize = 16 << 20;
const MAX_PAGES: usize = 1000;
const MAX_ENTRIES: usize = 500_000;

/// What the upstream said about a name.
#[derive(Debug, Clone)]
pub enum Answer<T> {
    /// It exists.
    Found(T),
    /// No such repo (or no access that the upstream admits to).
    RepoNotFound(String),
    /// No such revision.
    RevisionNotFound(String),
    /// No such path.
    EntryNotFound(String),
    /// Access refused (gated, private, bad token).
    Denied(String),
}

/// The Hub client.
pub struct HfUpstream {
    client: reqwest::Client,
    base: Url,
    token: Option<Secret>,
    meter: super::Meter,
}

impl HfUpstream {
    /// Builds the client from `[huggingface]` and `[upstream]`; its requests are counted in
    /// `metrics`.
    pub fn new(
        cfg: &HfConfig,
        net: &crate::config::UpstreamConfig,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Result<HfUpstream, MirrorError> {
        let (base, client) = super::base_and_client(
            &cfg.upstream,
            &cfg.redirect_hosts,
            "huggingface.upstream",
            net,
        )?;
        Ok(HfUpstream {
            client,
            base,
            token: cfg.token.clone(),
            meter: super::Meter {
                metrics,
                upstream: "hf",
            },
        })
    }

    fn url(&self, path: &str) -> Result<Url, MirrorError> {
        let base = self.base.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}{path}"))
            .map_err(|e| MirrorError::Upstream(format!("bad URL: {e}")))
    }

    fn get(&self, url: Url) -> reqwest::RequestBuilder {
        let req = self.client.get(url);
        match &self.token {
            Some(t) => req.bearer_auth(t.expose()),
            None => req,
        }
    }

    fn api_prefix(repo: &HfRepo) -> String {
        format!("/api/{}/{}", repo.kind.api_plural(), repo.id)
    }

    /// Classifies a non-success API answer.
    fn classify<T>(resp: &reqwest::Response) -> Result<Answer<T>, MirrorError> {
        let status = resp.status();
        let code = resp
            .headers()
            .get("x-error-code")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let msg = resp
            .headers()
            .get("x-error-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .chars()
            .take(300)
            .collect::<String>();
        match (status, code) {
            (_, "RevisionNotFound") => Ok(Answer::RevisionNotFound(msg)),
            (_, "EntryNotFound") => Ok(Answer::EntryNotFound(msg)),
            (_, "GatedRepo") | (StatusCode::FORBIDDEN, _) => Ok(Answer::Denied(msg)),
            (StatusCode::UNAUTHORIZED, "RepoNotFound") | (StatusCode::NOT_FOUND, _) => {
                Ok(Answer::RepoNotFound(msg))
            }
            (StatusCode::UNAUTHORIZED, _) => Ok(Answer::Denied(msg)),
            (StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE, _) => {
                Err(MirrorError::UpstreamBusy {
                    retry_after_secs: retry_after(resp).unwrap_or(5),
                })
            }
            _ => Err(MirrorError::Upstream(format!("answered {status}"))),
        }
    }

    /// Resolves a revision name to a commit.
    pub async fn resolve(
        &self,
        repo: &HfRepo,
        rev: &RevisionName,
    ) -> Result<Answer<Revision>, MirrorError> {
        let rev_seg = utf8_percent_encode(rev.as_str(), SEGMENT);
        let url = self.url(&format!("{}/revision/{rev_seg}", Self::api_prefix(repo)))?;
        let resp = self
            .meter
            .send(self.get(url))
            .await
            .map_err(|e| MirrorError::Upstream(describe(&e)))?;
        if !resp.status().is_success() {
            return Self::classify(&resp);
        }
        #[derive(serde::Deserialize)]
        struct Info {
            sha: String,
        }
        let body = read_limited(resp, MAX_JSON).await?;
        let info: Info = serde_json::from_slice(&body)
            .map_err(|e| MirrorError::Upstream(format!("revision info is not valid JSON: {e}")))?;
        let commit = Revision::parse(&info.sha)
            .map_err(|_| MirrorError::Upstream("revision info has no 40-hex sha".into()))?;
        Ok(Answer::Found(commit))
    }

    /// Lists every file and directory of a commit, following `Link` pagination (only to the
    /// upstream's own origin).
    pub async fn manifest(
        &self,
        repo: &HfRepo,
        commit: Revision,
    ) -> Result<Answer<Manifest>, MirrorError> {
        #[derive(serde::Deserialize)]
        struct RawLfs {
            oid: String,
            size: u64,
            #[serde(rename = "pointerSize", default)]
            pointer_size: u64,
        }
        #[derive(serde::Deserialize)]
        struct Raw {
            #[serde(rename = "type")]
            kind: String,
            oid: String,
            #[serde(default)]
            size: u64,
            path: String,
            lfs: Option<RawLfs>,
        }
        let mut next = Some(self.url(&format!(
            "{}/tree/{commit}?recursive=true&expand=false",
            Self::api_prefix(repo)
        ))?);
        let mut entries = Vec::new();
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > MAX_PAGES {
                return Err(MirrorError::Upstream(
                    "tree listing has too many pages".into(),
                ));
            }
            let resp = self
                .meter
                .send(self.get(url))
                .await
                .map_err(|e| MirrorError::Upstream(describe(&e)))?;
            if !resp.status().is_success() {
                return Self::classify(&resp);
            }
            next = next_link(&resp, &self.base);
            let body = read_limited(resp, MAX_JSON).await?;
            let raw: Vec<Raw> = serde_json::from_slice(&body).map_err(|e| {
                MirrorError::Upstream(format!("tree listing is not valid JSON: {e}"))
            })?;
            for r in raw {
                let bad = |what: &str| {
                    MirrorError::Upstream(format!("tree listing: {what} for {:?}", r.path))
                };
                let path = RepoPath::parse(&r.path).map_err(|_| bad("invalid path"))?;
                let oid = GitOid::from_hex(&r.oid).map_err(|_| bad("invalid oid"))?;
                let kind = match r.kind.as_str() {
                    "file" => EntryKind::File,
                    "directory" => EntryKind::Directory,
                    _ => return Err(bad("unknown entry type")),
                };
                let lfs = match r.lfs {
                    Some(l) => Some(Lfs {
                        sha256: Digest::from_hex(&l.oid).map_err(|_| bad("invalid lfs oid"))?,
                        size: l.size,
                        pointer_size: l.pointer_size,
                    }),
                    None => None,
                };
                let size = lfs.map_or(r.size, |l| l.size);
                entries.push(Entry {
                    path,
                    kind,
                    oid,
                    size,
                    lfs,
                });
            }
            if entries.len() > MAX_ENTRIES {
                return Err(MirrorError::Upstream(
                    "tree listing has too many entries".into(),
                ));
            }
        }
        Ok(Answer::Found(Manifest::new(entries)))
    }

    /// Opens a file's bytes at a commit (a range of them, or all). Follows redirects only to allowed hosts.
    pub async fn open_file(
        &self,
        repo: &HfRepo,
        commit: Revision,
        path: &RepoPath,
        range: super::ByteRange,
    ) -> Result<FileResponse, OpenError> {
        let prefix = match repo.kind {
            crate::names::RepoKind::Model => String::new(),
            crate::names::RepoKind::Dataset => "/datasets".into(),
        };
        let url = self
            .url(&format!(
                "{prefix}/{}/resolve/{commit}/{}",
                repo.id,
                utf8_percent_encode(path.as_str(), PATH)
            ))
            .map_err(|e| OpenError::Permanent(e.to_string()))?;
        super::open_ranged(&self.meter, self.get(url), range, path.as_str()).await
    }
}

/// The `rel="next"` target of a `Link` header, if it stays on the upstream's origin.
fn next_link(resp: &reqwest::Response, base: &Url) -> Option<Url> {
    let link = resp.headers().get(header::LINK)?.to_str().ok()?;
    for part in link.split(',') {
        let (target, params) = part.split_once(';')?;
        if params
            .split(';')
            .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"))
        {
            let target = target.trim().trim_start_matches('<').trim_end_matches('>');
            let url = base.join(target).ok()?;
            if url.origin() == base.origin() {
                return Some(url);
            }
        }
    }
    None
}
