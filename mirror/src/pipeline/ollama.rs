//! The Ollama (OCI distribution) side of the pipeline: a tag resolves to a manifest digest (or its
//! pin), the manifest bytes are verified against that digest and stored as a blob, and every blob
//! the manifest lists is fetched through the shared pipeline, checked against its digest and
//! declared size, and scanned. Only blobs listed by a verified manifest of an allowed name are
//! ever fetched or served under that name.

use std::sync::Arc;
use std::time::Duration;

use verifier::Digest;

use super::admit::{Admit, Asked};
use super::fetch::{Expect, FetchEnv, FetchTask, Scanning};
use super::scope::{BlobScope, ManifestScope};
use super::{Fetched, FileState, Lookup, Mirror, Missing};
use crate::error::MirrorError;
use crate::flight::{Progress, Waited};
use crate::names::{OllamaName, Reference, Tag};
use crate::policy::OllamaDecision;
use crate::refusal::Refusal;
use crate::store::{now_unix, DriftRecord, FileRecord, LayerRecord, ManifestRecord, Store};
use crate::upstream::oci::{ManifestAnswer, OciUpstream, MAX_MANIFEST};
use signing::Source;

/// A verified manifest, ready to serve byte for byte from the blob store.
#[derive(Debug, Clone)]
pub struct ManifestDoc {
    /// Its digest (the sha256 of its bytes).
    pub digest: Digest,
    /// Media type.
    pub content_type: String,
    /// Size.
    pub size: u64,
}

/// A blob as a client may see it.
#[derive(Debug, Clone)]
pub struct BlobInfo {
    /// Declared size (from the verified manifest).
    pub size: u64,
    /// Where the bytes stand.
    pub state: FileState,
    /// The manifest that lists it (for the audit log).
    pub manifest: Digest,
    /// The approval that covers it, if approvals decide for the name.
    pub approval: Option<signing::ApprovalId>,
}

/// Layers a manifest may list (ollama models have a handful; a bomb has millions).
const MAX_LAYERS: usize = 1000;

#[derive(serde::Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    size: u64,
}

#[derive(serde::Deserialize)]
struct ManifestJson {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default)]
    media_type: Option<String>,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// Parses and checks a manifest; returns every blob it lists (config first).
pub(crate) fn parse_manifest(bytes: &[u8]) -> Result<Vec<(Digest, LayerRecord)>, String> {
    let m: ManifestJson =
        serde_json::from_slice(bytes).map_err(|e| format!("manifest is not valid: {e}"))?;
    if m.schema_version != 2 {
        return Err(format!(
            "unsupported manifest schemaVersion {}",
            m.schema_version
        ));
    }
    match m.media_type.as_deref() {
        None
        | Some("application/vnd.docker.distribution.manifest.v2+json")
        | Some("application/vnd.oci.image.manifest.v1+json") => {}
        Some(other) => return Err(format!("unsupported manifest media type {other}")),
    }
    if m.layers.len() > MAX_LAYERS {
        return Err(format!(
            "manifest lists {} layers (limit {MAX_LAYERS})",
            m.layers.len()
        ));
    }
    let placeholder = Digest::of(b"");
    let mut out = Vec::with_capacity(m.layers.len() + 1);
    for d in std::iter::once(&m.config).chain(m.layers.iter()) {
        let digest: Digest = d
            .digest
            .parse()
            .map_err(|_| format!("layer digest {:?} is not sha256", d.digest))?;
        // 1 TiB: larger than any real model file, small enough to keep arithmetic safe.
        if d.size > 1 << 40 {
            return Err(format!("layer {digest} declares an absurd size {}", d.size));
        }
        out.push((
            digest,
            LayerRecord {
                size: d.size,
                media_type: d.media_type.clone(),
                manifest: placeholder,
            },
        ));
    }
    Ok(out)
}

impl Mirror {
    /// Resolves a manifest reference under policy and pins, fetching and verifying it if needed,
    /// and starts fetching its blobs in the background (a pull asks for them next).
    /// `client` names the asker in requests and the audit log.
    pub async fn ollama_manifest(
        &self,
        name: &OllamaName,
        reference: &Reference,
        client: &crate::Caller,
    ) -> Result<Lookup<ManifestDoc>, MirrorError> {
        let config = || match self.policy.decide_ollama(name, reference) {
            OllamaDecision::Allowed { pin } => Ok(pin.map(|d| d.to_string())),
            OllamaDecision::Refused(r) => Err(r),
        };
        let asked = reference.to_string();
        let pin = match self
            .admit(
                Source::Ollama,
                &name.to_string(),
                &asked,
                config,
                client,
                Asked::Ollama(name, reference),
            )
            .await?
        {
            Admit::Refused(r) => return Ok(Lookup::Refused(r)),
            Admit::Missing(m) => return Ok(m.into()),
            Admit::Allowed { pin: None, .. } => None,
            Admit::Allowed { pin: Some(p), .. } => match p.parse::<Digest>() {
                Ok(d) => Some(d),
                Err(_) => {
                    return Ok(Lookup::Refused(Refusal::RevisionNotApproved {
                        name: name.to_string(),
                        asked,
                        approved: "an approval whose revision is not a manifest digest".into(),
                    }))
                }
            },
        };
        let pin = match (reference, pin) {
            // Asked by digest: it must be the approved one, if one is pinned.
            (Reference::Digest(d), Some(p)) if *d != p => {
                return Ok(Lookup::Refused(Refusal::RevisionNotApproved {
                    name: name.to_string(),
                    asked,
                    approved: p.to_string(),
                }))
            }
            (_, pin) => pin,
        };
        let digest = match (reference, pin) {
            // By digest: only a digest in this name's scope, whatever the store holds for others.
            (Reference::Digest(d), _) => match {
                let (n, d) = (name.clone(), *d);
                self.off_loop(move |m| m.ollama_manifest_scope(&n, &d))
                    .await?
            } {
                ManifestScope::Covered => *d,
                ManifestScope::Refused(r) => return Ok(Lookup::Refused(r)),
                // The flight records the confirmation when the upstream serves it under `name`.
                ManifestScope::AskUpstream => {
                    match self.fetch_manifest(name, reference, Some(*d)).await? {
                        Lookup::Found(doc) => doc.digest,
                        other => return Ok(other),
                    }
                }
            },
            (Reference::Tag(tag), Some(pin)) => {
                if !self.offline {
                    self.check_drift(name, tag, pin);
                }
                pin
            }
            (Reference::Tag(tag), None) => {
                // Offline, an imported tag never goes stale: there is nothing to ask.
                let (n, t) = (name.clone(), tag.clone());
                let fresh = self
                    .off_loop(move |m| {
                        Ok(m.store
                            .get_tag(&n, &t)?
                            .filter(|r| {
                                m.offline || now_unix().saturating_sub(r.resolved_at) < m.tag_ttl
                            })
                            .filter(|r| m.store.has_blob(&r.digest))
                            // A resolution from before confirmations were recorded is asked again.
                            .filter(|r| m.store.is_confirmed(&n, &r.digest).unwrap_or(false)))
                    })
                    .await?;
                match fresh {
                    Some(r) => r.digest,
                    // The flight records the tag itself, before it ends.
                    None => match self.fetch_manifest(name, reference, None).await? {
                        Lookup::Found(doc) => doc.digest,
                        other => return Ok(other),
                    },
                }
            }
        };
        let stored = self
            .off_loop(move |m| {
                Ok(m.store
                    .get_oci_manifest(&digest)?
                    .filter(|_| m.store.has_blob(&digest)))
            })
            .await?;
        let doc = match stored {
            Some(rec) => ManifestDoc {
                digest,
                content_type: rec.content_type,
                size: rec.size,
            },
            None => match self
                .fetch_manifest(name, &Reference::Digest(digest), Some(digest))
                .await?
            {
                Lookup::Found(doc) => doc,
                other => return Ok(other),
            },
        };
        let layers = self.record_layers(name, &doc).await?;
        // Served under `name`: its blobs are now in the name's scope (while the manifest is).
        let (store, name2, served) = (self.store.clone(), name.clone(), doc.digest);
        let blobs: Vec<Digest> = layers.iter().map(|(d, _)| *d).collect();
        self.blocking(move || store.put_served(&name2, &served, blobs))
            .await?;
        // A refused layer makes the whole model unservable, and the manifest is the only answer
        // whose body ollama shows: its blob requests start with a HEAD (no body), and a failed
        // GET for the direct URL is retried for 30 s and then reported as "context deadline
        // exceeded" (server/download.go). So the manifest waits, up to MANIFEST_HOLD, for the
        // layers record_layers started fetching; the client would wait for the same bytes at the
        // blob's direct URL anyway, so a pull takes no longer. A layer still unsettled after the
        // hold (a large model on a slow link) is reported on its blob requests, and on the
        // manifest of every later pull.
        let deadline = tokio::time::Instant::now() + MANIFEST_HOLD;
        for (d, layer) in &layers {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Some(reason) = self.layer_refusal(name, d, layer, left).await? {
                return Ok(Lookup::Refused(Refusal::Verification {
                    file: format!("{name}:{reference} layer {} {d}", layer.media_type),
                    reason,
                }));
            }
        }
        Ok(Lookup::Found(doc))
    }

    /// Why a layer of a manifest cannot be served, waiting at most `wait` for its fetch: its
    /// sticky refusal, or its bytes failing the format its media type requires. `None` when it is
    /// servable or not settled yet.
    async fn layer_refusal(
        &self,
        name: &OllamaName,
        digest: &Digest,
        layer: &LayerRecord,
        wait: Duration,
    ) -> Result<Option<String>, MirrorError> {
        let reason = |r: Refusal| match r {
            Refusal::Verification { reason, .. } => reason,
            other => other.to_string(),
        };
        let (store, d) = (self.store.clone(), *digest);
        let (refused, ready) = self
            .blocking(move || {
                let ready = store.get_blob_record(&d)?.is_some() && store.has_blob(&d);
                Ok((store.get_blob_refusal(&d)?, ready))
            })
            .await?;
        if let Some(r) = refused {
            return Ok(Some(reason(r)));
        }
        // Offline nothing is fetched: only what is stored can be judged.
        if ready || self.offline {
            return match ready {
                true => self.recheck_format(digest, &layer.media_type).await,
                false => Ok(None),
            };
        }
        match self.blob_flight(name, digest, layer).await.wait(wait).await {
            Waited::Done(Fetched::Refused(r)) => Ok(Some(reason(r))),
            Waited::Done(Fetched::Ready(_)) => self.recheck_format(digest, &layer.media_type).await,
            _ => Ok(None),
        }
    }

    /// Checks a promoted blob's bytes against the format `media_type` requires. Ready is keyed by
    /// digest alone, and the fetch checked the format of the media type it was fetched for: the
    /// same bytes listed under another media type (a licence text as a model layer) are checked
    /// again, once per (digest, media type) per process. `Some(reason)` if they do not pass.
    async fn recheck_format(
        &self,
        digest: &Digest,
        media_type: &str,
    ) -> Result<Option<String>, MirrorError> {
        let Some(allowed) = layer_formats(media_type) else {
            return Ok(None);
        };
        let key = (*digest, media_type.to_owned());
        if self.formats_checked.contains_key(&key) {
            return Ok(None);
        }
        let (store, d, scanning) = (self.store.clone(), *digest, self.scanning.clone());
        let format = self
            .blocking(move || {
                let path = std::path::PathBuf::from(format!("blob {d}"));
                let file = store.blob_file(&d)?;
                let len = file.metadata().map_err(MirrorError::io(&path))?.len();
                let report =
                    verifier::scan_with(std::io::BufReader::new(file), len, &scanning.options)
                        .map_err(|e| MirrorError::Io {
                            path,
                            source: std::io::Error::other(e.to_string()),
                        })?;
                Ok(report.format)
            })
            .await?;
        if allowed.contains(&format) {
            self.formats_checked.insert(key, ());
            return Ok(None);
        }
        let want: Vec<String> = allowed
            .iter()
            .map(|f| format!("{f:?}").to_lowercase())
            .collect();
        Ok(Some(format!(
            "content is {format:?}, but the manifest declares {media_type} ({})",
            want.join(" or ")
        )))
    }

    /// Fetches a manifest upstream (single-flight), checks it against `expect` if given, parses it
    /// and stores its bytes as a blob.
    pub(super) async fn fetch_manifest(
        &self,
        name: &OllamaName,
        reference: &Reference,
        expect: Option<Digest>,
    ) -> Result<Lookup<ManifestDoc>, MirrorError> {
        if self.offline {
            return Ok(Lookup::Refused(Refusal::Offline {
                name: format!("{name}:{reference}"),
            }));
        }
        let key = format!("{}\0{reference}", name.index_key());
        // The same short memory of misses as for HF revisions: a loop of asks for a missing tag or
        // digest costs one upstream request per TTL.
        let miss_key = format!("oci\0{key}");
        if let Some(Missing::Repo(m) | Missing::Revision(m)) = self.missing.get(&miss_key) {
            return Ok(Lookup::RepoNotFound(m));
        }
        // A result recorded by a flight that just ended counts (checked under the flight map's
        // lock), so callers arriving after it do not ask upstream again.
        let (store, name2, ref2, ttl) = (
            self.store.clone(),
            name.clone(),
            reference.clone(),
            self.tag_ttl,
        );
        let settled = move || {
            let digest = match &ref2 {
                // Stored bytes answer for this name only if the upstream served them under it.
                Reference::Digest(d) if store.is_confirmed(&name2, d).ok()? => *d,
                Reference::Digest(_) => return None,
                Reference::Tag(t) => {
                    let r = store.get_tag(&name2, t).ok().flatten()?;
                    if now_unix().saturating_sub(r.resolved_at) >= ttl {
                        return None;
                    }
                    r.digest
                }
            };
            let rec = store
                .get_oci_manifest(&digest)
                .ok()
                .flatten()
                .filter(|_| store.has_blob(&digest))?;
            Some(Ok(Lookup::Found(ManifestDoc {
                digest,
                content_type: rec.content_type,
                size: rec.size,
            })))
        };
        let (store, oci, name2, ref2) = (
            self.store.clone(),
            self.oci.clone(),
            name.clone(),
            reference.clone(),
        );
        let flight = self
            .manifest_flights
            .join(key, settled, move |_| async move {
                fetch_manifest_task(store, oci, name2, ref2, expect)
                    .await
                    .map_err(Arc::new)
            });
        match flight.await.wait(Duration::from_secs(60)).await {
            Waited::Done(Ok(Lookup::RepoNotFound(m))) => {
                self.missing.insert(miss_key, Missing::Repo(m.clone()));
                Ok(Lookup::RepoNotFound(m))
            }
            Waited::Done(Ok(l)) => Ok(l),
            Waited::Done(Err(e)) => Err(MirrorError::Shared(e)),
            Waited::Running { .. } => {
                Err(MirrorError::Upstream("manifest request timed out".into()))
            }
            Waited::Lost => Err(MirrorError::Task("manifest task failed".into())),
        }
    }

    /// Fetches a manifest for review, without policy (the governance team is asking).
    pub(crate) async fn fetch_manifest_unchecked(
        &self,
        name: &OllamaName,
        reference: &Reference,
    ) -> Result<Lookup<ManifestDoc>, MirrorError> {
        let expect = match reference {
            Reference::Digest(d) => Some(*d),
            Reference::Tag(_) => None,
        };
        self.fetch_manifest(name, reference, expect).await
    }

    /// Records the blobs of a verified manifest as belonging to `name` and starts fetching them.
    pub(crate) async fn record_layers(
        &self,
        name: &OllamaName,
        doc: &ManifestDoc,
    ) -> Result<Vec<(Digest, LayerRecord)>, MirrorError> {
        let (store, name2, digest) = (self.store.clone(), name.clone(), doc.digest);
        let mrec = ManifestRecord {
            content_type: doc.content_type.clone(),
            size: doc.size,
        };
        let layers = self
            .blocking(move || {
                let bytes = store.read_small_blob(&digest, MAX_MANIFEST as u64)?;
                let layers = parse_manifest(&bytes).map_err(|detail| MirrorError::Corrupt {
                    key: digest.to_string(),
                    detail,
                })?;
                let mut out = Vec::new();
                for (d, mut rec) in layers {
                    rec.manifest = digest;
                    if store.get_layer(&name2, &d)?.is_none() {
                        store.put_layer(&name2, &d, &rec)?;
                    }
                    out.push((d, rec));
                }
                store.put_name_manifest(&name2, &digest, &mrec)?;
                Ok(out)
            })
            .await?;
        for (d, rec) in layers.iter().filter(|_| !self.offline) {
            // Prefetch: a pull HEADs and GETs every blob next; starting now hides upstream latency.
            let _ = self.blob_flight(name, d, rec).await;
        }
        Ok(layers)
    }

    /// The bytes of a verified manifest (small; read whole).
    pub async fn read_manifest(&self, doc: &ManifestDoc) -> Result<Vec<u8>, MirrorError> {
        let (store, digest) = (self.store.clone(), doc.digest);
        self.blocking(move || store.read_small_blob(&digest, MAX_MANIFEST as u64))
            .await
    }

    /// A blob of `name`: its declared size and state, starting its fetch if needed and waiting at
    /// most `wait` for it.
    pub async fn ollama_blob(
        &self,
        name: &OllamaName,
        digest: &Digest,
        wait: Duration,
    ) -> Result<Lookup<BlobInfo>, MirrorError> {
        let (n, d) = (name.clone(), *digest);
        let scope = self.off_loop(move |m| m.ollama_blob_scope(&n, &d)).await?;
        let (manifest, approval) = match scope {
            BlobScope::Covered { manifest, approval } => (manifest, approval.map(|a| a.id.clone())),
            BlobScope::Refused(r) => return Ok(Lookup::Refused(r)),
            BlobScope::NotListed => {
                return Ok(Lookup::RepoNotFound(format!(
                    "{digest} is not listed by any manifest served under {name}; pull the manifest first"
                )))
            }
        };
        Ok(
            match self.ollama_blob_unchecked(name, digest, wait).await? {
                Lookup::Found(mut info) => {
                    info.approval = approval;
                    info.manifest = manifest.unwrap_or(info.manifest);
                    Lookup::Found(info)
                }
                other => other,
            },
        )
    }

    /// A blob listed by a verified manifest of `name`, without policy.
    pub(crate) async fn ollama_blob_unchecked(
        &self,
        name: &OllamaName,
        digest: &Digest,
        wait: Duration,
    ) -> Result<Lookup<BlobInfo>, MirrorError> {
        let (store, n, d, offline) = (self.store.clone(), name.clone(), *digest, self.offline);
        let (layer, refused, missing_offline) = self
            .blocking(move || {
                let layer = store.get_layer(&n, &d)?;
                let refused = store.get_blob_refusal(&d)?;
                let missing = offline && store.get_blob_record(&d)?.is_none();
                Ok((layer, refused, missing))
            })
            .await?;
        let Some(layer) = layer else {
            return Ok(Lookup::RepoNotFound(format!(
                "{digest} is not listed by any approved manifest of {name}; pull the manifest first"
            )));
        };
        if let Some(r) = refused {
            return Ok(Lookup::Refused(r));
        }
        if missing_offline {
            return Ok(Lookup::Refused(Refusal::Offline {
                name: format!("{name} blob {digest}"),
            }));
        }
        let flight = self.blob_flight(name, digest, &layer).await;
        let state = match flight.wait(wait).await {
            Waited::Done(f) => match Mirror::settle(f)? {
                Lookup::Found(FileState::Ready(rec)) => {
                    if let Some(reason) = self.recheck_format(digest, &layer.media_type).await? {
                        return Ok(Lookup::Refused(Refusal::Verification {
                            file: format!("{name} layer {} {digest}", layer.media_type),
                            reason,
                        }));
                    }
                    FileState::Ready(rec)
                }
                Lookup::Found(state) => state,
                Lookup::Refused(r) => return Ok(Lookup::Refused(r)),
                _ => return Err(MirrorError::Task("unexpected fetch outcome".into())),
            },
            Waited::Running {
                eta_secs,
                elapsed_secs,
            } => FileState::Pending {
                retry_after: super::retry_after(eta_secs, elapsed_secs),
            },
            Waited::Lost => return Err(MirrorError::Task("fetch task failed".into())),
        };
        Ok(Lookup::Found(BlobInfo {
            size: layer.size,
            state,
            manifest: layer.manifest,
            approval: None,
        }))
    }

    async fn blob_flight(
        &self,
        name: &OllamaName,
        digest: &Digest,
        layer: &LayerRecord,
    ) -> crate::flight::Flight<Fetched> {
        let store = self.store.clone();
        let d = *digest;
        let settled = move || match store.get_blob_record(&d) {
            Ok(Some(rec)) if store.has_blob(&d) => Some(Fetched::Ready(rec)),
            _ => match store.get_blob_refusal(&d) {
                Ok(Some(r)) => Some(Fetched::Refused(r)),
                _ => None,
            },
        };
        let (store, oci, name, size) = (
            self.store.clone(),
            self.oci.clone(),
            name.clone(),
            layer.size,
        );
        let (media_type, env) = (layer.media_type.clone(), self.fetch_env.clone());
        let (scanning, checked) = (self.scanning.clone(), self.formats_checked.clone());
        self.blob_flights
            .join(d, settled, move |progress| {
                fetch_blob(
                    store, env, scanning, oci, name, d, size, media_type, checked, progress,
                )
            })
            .await
    }

    /// Checks in the background whether upstream moved a pinned tag; records drift for review.
    /// At most once per tag TTL.
    fn check_drift(&self, name: &OllamaName, tag: &Tag, pin: Digest) {
        let (store, oci, name, tag, ttl) = (
            self.store.clone(),
            self.oci.clone(),
            name.clone(),
            tag.clone(),
            self.tag_ttl,
        );
        // The whole check runs in the background, its index read on a blocking thread.
        self.rt.spawn(async move {
            let (s, n, t) = (store.clone(), name.clone(), tag.clone());
            let last = tokio::task::spawn_blocking(move || s.get_tag(&n, &t).ok().flatten())
                .await
                .ok()
                .flatten();
            if last.is_some_and(|r| now_unix().saturating_sub(r.resolved_at) < ttl) {
                return;
            }
            let answer = oci.manifest(&name, &Reference::Tag(tag.clone())).await;
            let Ok(ManifestAnswer::Found { bytes, .. }) = answer else { return };
            let upstream = Digest::of(&bytes);
            let _ = tokio::task::spawn_blocking(move || {
                store.put_tag(&name, &tag, upstream)?;
                if upstream != pin {
                    let label = format!("{name}:{tag}");
                    tracing::warn!(name = %label, %pin, %upstream, "upstream tag moved away from its pin; serving the pin");
                    store.put_drift(&DriftRecord { name: label, pinned: pin, upstream, seen_at: now_unix() })?;
                }
                Ok::<(), MirrorError>(())
            })
            .await;
        });
    }
}

/// Fetches, verifies and stores one manifest; records the tag it was asked by.
async fn fetch_manifest_task(
    store: Arc<Store>,
    oci: Arc<OciUpstream>,
    name: OllamaName,
    reference: Reference,
    expect: Option<Digest>,
) -> Result<Lookup<ManifestDoc>, MirrorError> {
    let (bytes, upstream_type) = match oci.manifest(&name, &reference).await? {
        ManifestAnswer::Found {
            bytes,
            content_type,
        } => (bytes, content_type),
        ManifestAnswer::NotFound(m) => return Ok(Lookup::RepoNotFound(m)),
        ManifestAnswer::Denied(m) => {
            return Ok(Lookup::Refused(Refusal::UpstreamDenied {
                name: name.to_string(),
                detail: m,
            }))
        }
    };
    let digest = Digest::of(&bytes);
    let label = format!("manifest {name}:{reference}");
    if let Some(want) = expect.filter(|w| *w != digest) {
        tracing::warn!(%label, %want, got = %digest, "manifest digest mismatch");
        return Ok(Lookup::Refused(Refusal::Verification {
            file: label,
            reason: format!("upstream manifest hashes to {digest}, expected {want}"),
        }));
    }
    let media_type = match parse_manifest(&bytes) {
        Ok(_) => manifest_media_type(&bytes),
        Err(reason) => {
            return Ok(Lookup::Refused(Refusal::Verification {
                file: label,
                reason,
            }))
        }
    };
    // Serve the type the manifest declares, not whatever the upstream's header said
    // (registry.ollama.ai says text/plain): OCI clients dispatch on it.
    let content_type = media_type.unwrap_or_else(|| {
        if upstream_type.starts_with("application/vnd.oci.image.manifest") {
            upstream_type
        } else {
            crate::upstream::oci::DOCKER_MANIFEST_V2.to_owned()
        }
    });
    let size = bytes.len() as u64;
    let rec = ManifestRecord {
        content_type: content_type.clone(),
        size,
    };
    tokio::task::spawn_blocking(move || {
        super::verified::promote_small(&store, &bytes, digest)?;
        store.put_oci_manifest(&digest, &rec)?;
        store.put_confirmed(&name, &digest)?;
        if let Reference::Tag(t) = &reference {
            store.put_tag(&name, t, digest)?;
        }
        Ok::<(), MirrorError>(())
    })
    .await
    .map_err(|e| MirrorError::Task(e.to_string()))??;
    Ok(Lookup::Found(ManifestDoc {
        digest,
        content_type,
        size,
    }))
}

/// (blob, layer media type) pairs whose bytes passed that media type's format check.
pub(crate) type FormatsChecked = moka::sync::Cache<(Digest, String), ()>;

/// How long a manifest request waits for its layers to be fetched and checked, so that a refused
/// layer's reason can be the manifest's answer (see [`Mirror::ollama_manifest`]). ollama's manifest
/// request has no timeout, but other clients' reads time out at 30 s: 20 s, as for a blob GET,
/// keeps well clear of that.
const MANIFEST_HOLD: Duration = Duration::from_secs(20);

/// The `mediaType` a manifest declares, if any.
fn manifest_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Typed>(bytes).ok()?.media_type
}

/// What an Ollama layer's bytes must be, by its declared media type: weights are GGUF, parameters
/// JSON, prompts and licences text. A layer whose content does not match is refused, so a pickle or
/// an unknown blob cannot hide behind a weights media type.
pub(crate) fn layer_formats(media_type: &str) -> Option<&'static [verifier::Format]> {
    use verifier::Format;
    let kind = media_type.strip_prefix("application/vnd.ollama.image.")?;
    match kind {
        "model" | "adapter" | "projector" | "draft" => Some(&[Format::Gguf]),
        "params" | "messages" | "json" => Some(&[Format::Json]),
        "template" | "prompt" | "system" | "license" => Some(&[Format::Text, Format::Json]),
        _ => None,
    }
}

/// Fetches one blob through the shared pipeline and records the outcome.
#[allow(clippy::too_many_arguments)]
async fn fetch_blob(
    store: Arc<Store>,
    env: Arc<FetchEnv>,
    scanning: Arc<Scanning>,
    oci: Arc<OciUpstream>,
    name: OllamaName,
    digest: Digest,
    size: u64,
    media_type: String,
    checked: FormatsChecked,
    progress: Arc<Progress>,
) -> Fetched {
    let task = FetchTask {
        store: store.clone(),
        env,
        open: Box::new(move |range| {
            let (oci, name) = (oci.clone(), name.clone());
            Box::pin(async move { oci.open_blob(&name, &digest, range).await })
        }),
        label: digest.to_string(),
        upstream: "ollama",
        size,
        expect: Expect::Sha256(digest),
        formats: layer_formats(&media_type),
        scanning,
    };
    // The task checks the format this media type requires: that pair needs no second look.
    let checked_key = (digest, media_type.clone());
    match task.run(&progress).await {
        Ok(Ok(promoted)) => {
            let rec = FileRecord {
                digest: promoted.digest,
                size,
                etag: digest.hex(),
                scan: promoted.scan,
            };
            let rec2 = rec.clone();
            match tokio::task::spawn_blocking(move || store.put_blob_record(&rec2)).await {
                Ok(Ok(())) => {
                    checked.insert(checked_key, ());
                    Fetched::Ready(rec)
                }
                Ok(Err(e)) => Fetched::from_error(e, &digest.to_string()),
                Err(e) => {
                    Fetched::from_error(MirrorError::Task(e.to_string()), &digest.to_string())
                }
            }
        }
        Ok(Err(reason)) => {
            tracing::warn!(%digest, %reason, "blob refused");
            let refusal = Refusal::Verification {
                file: digest.to_string(),
                reason,
            };
            let r = refusal.clone();
            let put =
                tokio::task::spawn_blocking(move || store.put_blob_refusal(&digest, &r)).await;
            if !matches!(put, Ok(Ok(()))) {
                tracing::error!(
                    "could not record a refusal; it will be re-checked on the next request"
                );
            }
            Fetched::Refused(refusal)
        }
        Err(e) => Fetched::from_error(e, &digest.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_are_checked() {
        let d = format!("sha256:{}", "a".repeat(64));
        let good = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{{"mediaType":"c","digest":"{d}","size":2}},"layers":[{{"mediaType":"application/vnd.ollama.image.model","digest":"{d}","size":10}}]}}"#
        );
        assert_eq!(parse_manifest(good.as_bytes()).unwrap().len(), 2);
        assert!(parse_manifest(b"{}").is_err());
        assert!(parse_manifest(good.replace("sha256:", "md5:").as_bytes()).is_err());
        assert!(parse_manifest(
            good.replace("\"size\":10", "\"size\":99999999999999999")
                .as_bytes()
        )
        .is_err());
        assert!(parse_manifest(
            good.replace("schemaVersion\":2", "schemaVersion\":1")
                .as_bytes()
        )
        .is_err());
    }
}
