//! Air-gap bundles: what `airlock export` writes on the connected mirror and `airlock import`
//! takes in on the offline one.
//!
//! A bundle is a directory of at most `part_size`-byte files `part-0000`, `part-0001`, … holding
//! one stream of content-addressed items laid end to end (blobs, HF listings, approval and
//! revocation records, CycloneDX ML-BOMs), plus `manifest.json`, which names every part and every
//! item by sha256, size and offset and says which versions the items make up, and `manifest.sig`,
//! the exporting mirror's Ed25519 signature over the manifest. Nothing else in a bundle is trusted:
//! every item is re-hashed against the signed manifest, every blob re-scanned, every approval
//! re-verified against the importing side's own governance keys, and the `[[trust]]` rules are
//! re-checked there. Governance keys and trust roots never travel in a bundle.
//!
//! Items tile the stream exactly (each starts where the one before ended; together they fill the
//! parts), so every byte of every part is covered by some item's sha256: a byte flipped anywhere
//! fails an item, and the parts' own sha256 then name which part is bad.

mod bom;
mod export;
mod import;

use std::path::Path;

use serde::{Deserialize, Serialize};
use signing::{ApprovalId, KeyId, Timestamp};
use verifier::Digest;

use crate::error::MirrorError;
use crate::names::{HfRepo, NameError, OllamaName, RepoId, RepoKind, Revision};

pub use bom::bom_of;
pub use export::{export, Selection};
pub use import::{import, Imported};

/// The manifest's format tag.
const FORMAT: &str = "airlock-bundle-v1";
/// The manifest's file name.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The signature's file name.
pub const SIGNATURE_FILE: &str = "manifest.sig";
/// A manifest larger than this is refused unread (a million items fit in far less).
const MAX_MANIFEST: u64 = 256 << 20;
/// Largest non-blob item (a listing, a record, a BOM) read into memory.
const MAX_SMALL_ITEM: u64 = 64 << 20;
/// Read and write chunk size.
const CHUNK: usize = 1 << 20;

/// The name of part `i`.
fn part_name(i: usize) -> String {
    format!("part-{i:04}")
}

/// The signed table of contents of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BundleManifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// The exporting mirror's key.
    pub exporter: KeyId,
    /// When it was written.
    pub created_at: Timestamp,
    /// For a differential bundle: the sha256 of the manifest it is relative to. Items that one
    /// carried are not repeated; the importing side must already hold them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Digest>,
    /// Largest part size.
    pub part_size: u64,
    /// Every part, in stream order.
    pub parts: Vec<Part>,
    /// Every item, in stream order.
    pub items: Vec<Item>,
    /// The versions the items make up.
    pub versions: Vec<Version>,
}

/// One part file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Part {
    /// `part-0000`, …
    pub name: String,
    /// sha256 of the part's bytes.
    pub sha256: Digest,
    /// Its length.
    pub size: u64,
}

/// What an item is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ItemKind {
    /// A file, layer or OCI manifest: scanned and promoted into `blobs/`.
    Blob,
    /// An HF commit listing (a [`crate::Manifest`] as JSON).
    Listing,
    /// A signed approval record file.
    Approval,
    /// A signed revocation record file.
    Revocation,
    /// A CycloneDX ML-BOM of one version.
    Bom,
}

/// One item of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Item {
    /// What it is.
    pub kind: ItemKind,
    /// sha256 of its bytes.
    pub sha256: Digest,
    /// Its length.
    pub size: u64,
    /// Where it starts in the stream.
    pub offset: u64,
}

/// A file of a version (an HF repo file or an Ollama layer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionFile {
    /// Repo path (HF) or the layer's media type (Ollama).
    pub path: String,
    /// sha256 of its bytes (the blob item).
    pub sha256: Digest,
    /// Its length.
    pub size: u64,
    /// The ETag clients get (HF: LFS sha256 or git blob id).
    pub etag: String,
    /// The exporting side's scan summary (the importing side scans again and keeps its own).
    pub scan: String,
}

/// One version a bundle carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "lowercase", deny_unknown_fields)]
pub enum Version {
    /// A Hugging Face commit.
    Hf {
        /// `org/repo` or `datasets/org/repo`.
        name: String,
        /// The commit.
        commit: Revision,
        /// Branch and tag names that resolve to it (`main`).
        refs: Vec<String>,
        /// The listing item.
        listing: Digest,
        /// Its files.
        files: Vec<VersionFile>,
        /// The approval that covers it, if one does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approval: Option<ApprovalId>,
        /// Licence from the approval or the model card.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        license: Option<String>,
    },
    /// An Ollama model manifest.
    Ollama {
        /// `namespace/model`.
        name: String,
        /// The manifest digest (its bytes are a blob item).
        manifest: Digest,
        /// Its media type.
        content_type: String,
        /// Tags that resolve to it.
        tags: Vec<String>,
        /// Every blob the manifest lists (config first).
        layers: Vec<VersionFile>,
        /// The approval that covers it, if one does.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        approval: Option<ApprovalId>,
        /// Licence from the approval.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        license: Option<String>,
    },
}

impl Version {
    /// `hf acme/tiny@<commit>` or `ollama library/x@sha256:…`, for messages and the audit log.
    pub fn label(&self) -> String {
        match self {
            Version::Hf { name, commit, .. } => format!("hf {name}@{commit}"),
            Version::Ollama { name, manifest, .. } => format!("ollama {name}@{manifest}"),
        }
    }
    /// Every blob the version needs.
    fn blobs(&self) -> Vec<(Digest, u64)> {
        match self {
            Version::Hf { files, .. } => files.iter().map(|f| (f.sha256, f.size)).collect(),
            Version::Ollama {
                layers, manifest, ..
            } => layers
                .iter()
                .map(|f| (f.sha256, f.size))
                .chain(std::iter::once((*manifest, 0)))
                .collect(),
        }
    }
}

/// Parses `org/repo`, `repo` or `datasets/org/repo`.
pub(crate) fn hf_repo(name: &str) -> Result<HfRepo, NameError> {
    let (kind, id) = match name.strip_prefix("datasets/") {
        Some(rest) => (RepoKind::Dataset, rest),
        None => (RepoKind::Model, name),
    };
    Ok(HfRepo {
        kind,
        id: RepoId::parse(id)?,
    })
}

/// Parses `namespace/model`.
pub(crate) fn ollama_name(name: &str) -> Result<OllamaName, NameError> {
    let (ns, model) = name.split_once('/').unwrap_or(("library", name));
    OllamaName::new(ns, model)
}

/// Reads a whole file of at most `limit` bytes.
fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, MirrorError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(MirrorError::io(path))?;
    let mut out = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut out)
        .map_err(MirrorError::io(path))?;
    if out.len() as u64 > limit {
        return Err(MirrorError::Config(format!(
            "{}: larger than the {limit}-byte limit",
            path.display()
        )));
    }
    Ok(out)
}

/// The ML-BOM of an HF commit held in `store`, as its bundles carry it.
pub fn bom_hf(
    store: &crate::store::Store,
    gov: &crate::governance::Governance,
    name: &str,
    revision: &str,
) -> Result<serde_json::Value, MirrorError> {
    let commit = Revision::parse(revision).map_err(|e| MirrorError::Bundle {
        item: revision.into(),
        reason: format!("{e} (give the commit)"),
    })?;
    let approval = gov.approvals().into_iter().find(|a| {
        a.record.source == signing::Source::Hf
            && a.record.name.eq_ignore_ascii_case(name)
            && a.record.revision == commit.hex()
    });
    let refs = approval
        .as_ref()
        .and_then(|a| a.record.revision_name.clone())
        .into_iter()
        .collect();
    let (v, _) = export::hf_version(store, name, commit, approval.as_deref(), refs)?;
    Ok(bom_of(&v, approval.as_ref().map(|a| &a.record)))
}

/// The ML-BOM of an Ollama manifest held in `store`, as its bundles carry it.
pub fn bom_ollama(
    store: &crate::store::Store,
    gov: &crate::governance::Governance,
    name: &str,
    revision: &str,
) -> Result<serde_json::Value, MirrorError> {
    let digest: Digest = revision.parse().map_err(|_| MirrorError::Bundle {
        item: revision.into(),
        reason: "not a manifest digest (sha256:…)".into(),
    })?;
    let approval = gov.approvals().into_iter().find(|a| {
        a.record.source == signing::Source::Ollama
            && a.record.name.eq_ignore_ascii_case(name)
            && a.record.revision == digest.to_string()
    });
    let tags = approval
        .as_ref()
        .and_then(|a| a.record.revision_name.clone())
        .into_iter()
        .collect();
    let v = export::ollama_version(store, name, digest, approval.as_deref(), tags)?;
    Ok(bom_of(&v, approval.as_ref().map(|a| &a.record)))
}

#[cfg(test)]
mod tests;
