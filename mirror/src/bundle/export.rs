//! `airlock export`: collects the selected versions from the store (blobs, listings, OCI
//! manifests, approval and revocation records, scan summaries), lays them out as one stream of
//! items cut into parts, and signs the manifest with the mirror's key.
//!
//! The plan (which items, in which order, at which offsets) is computed before anything is
//! written and is the same on every run with the same selection, so an interrupted export can be
//! re-run: parts already written are re-hashed against what the last run recorded and kept.

use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use signing::{ApprovalId, AuditEvent, Source};
use verifier::Digest;

use super::{
    bom_of, hf_repo, ollama_name, part_name, read_bounded, BundleManifest, Item, ItemKind, Part,
    Version, VersionFile, CHUNK, FORMAT, MANIFEST_FILE, MAX_MANIFEST, SIGNATURE_FILE,
};
use crate::error::MirrorError;
use crate::governance::{licence_of_model_card, Approval, Governance};
use crate::manifest::{EntryKind, Manifest};
use crate::names::Revision;
use crate::store::Store;
use crate::upstream::oci::MAX_MANIFEST as MAX_OCI_MANIFEST;

/// Which versions a bundle carries.
#[derive(Debug, Clone)]
pub enum Selection {
    /// These approvals' versions.
    Approvals(Vec<ApprovalId>),
    /// Every usable (not revoked, not expired) approval's version.
    AllApproved,
    /// Everything held in full, approved or not (for setups that use allow rules).
    All,
}

/// What an export wrote.
#[derive(Debug)]
pub struct Exported {
    /// The sha256 of `manifest.json`.
    pub bundle: Digest,
    /// The versions carried.
    pub versions: Vec<String>,
    /// Items and their total size.
    pub items: u64,
    /// Bytes in the parts.
    pub bytes: u64,
    /// Parts written, and parts kept from an interrupted run.
    pub parts_written: usize,
    /// Parts kept from an earlier, interrupted run (re-hashed and found intact).
    pub parts_kept: usize,
}

/// Where an item's bytes come from.
enum ItemSource {
    /// A stored blob, read through the blob store.
    Blob(crate::cas::Cas),
    Bytes(Arc<Vec<u8>>),
}

/// What an interrupted run leaves behind: the plan it was writing and the parts it finished.
#[derive(Serialize, Deserialize)]
struct ProgressFile {
    plan: Digest,
    parts: Vec<Part>,
}

const PROGRESS_FILE: &str = ".export-progress.json";

/// Writes a bundle of `selection` into `out`. `since` names the manifest of an earlier bundle:
/// items it carried are left out. `progress(done, total)` is called as bytes are written.
/// Blocking; the store must not be in use by a running server (sled is single-process).
pub fn export(
    store: &Store,
    gov: &Governance,
    selection: &Selection,
    out: &Path,
    part_size: u64,
    since: Option<&Path>,
    progress: &dyn Fn(u64, u64),
) -> Result<Exported, MirrorError> {
    if part_size == 0 {
        return Err(MirrorError::Bundle {
            item: "--part-size".into(),
            reason: "must be at least 1 byte".into(),
        });
    }
    let approvals = gov.approvals();
    let now = crate::governance::now();
    let chosen: Vec<Arc<Approval>> = match selection {
        Selection::Approvals(ids) => {
            let mut v = Vec::new();
            for id in ids {
                let a = approvals
                    .iter()
                    .find(|a| &a.id == id)
                    .ok_or_else(|| MirrorError::Bundle {
                        item: id.to_string(),
                        reason: "no such approval on this mirror (see `airlock requests` / the admin API)".into(),
                    })?;
                if a.revoked.is_some() || a.record.is_expired(now) {
                    return Err(MirrorError::Bundle {
                        item: id.to_string(),
                        reason: "is revoked or expired; it is not exported".into(),
                    });
                }
                v.push(a.clone());
            }
            v
        }
        Selection::AllApproved => approvals
            .iter()
            .filter(|a| a.revoked.is_none() && !a.record.is_expired(now))
            .cloned()
            .collect(),
        Selection::All => Vec::new(),
    };

    let mut versions = Vec::new();
    let mut small: Vec<(ItemKind, Arc<Vec<u8>>)> = Vec::new();
    for a in &chosen {
        let json = a.signed.to_json().map_err(crate::governance::signing_err)?;
        small.push((ItemKind::Approval, Arc::new(json.into_bytes())));
        let rev = &a.record.revision;
        let refs: Vec<String> = a.record.revision_name.iter().cloned().collect();
        let (v, listing) = match a.record.source {
            Source::Hf => {
                let commit = Revision::parse(rev).map_err(|e| MirrorError::Bundle {
                    item: a.id.to_string(),
                    reason: e.to_string(),
                })?;
                let (v, l) = hf_version(store, &a.record.name, commit, Some(a), refs)?;
                (v, Some(l))
            }
            Source::Ollama => {
                let digest: Digest = rev.parse().map_err(|_| MirrorError::Bundle {
                    item: a.id.to_string(),
                    reason: "revision is not a manifest digest".into(),
                })?;
                (
                    ollama_version(store, &a.record.name, digest, Some(a), refs)?,
                    None,
                )
            }
        };
        if let Some(l) = listing {
            small.push((ItemKind::Listing, Arc::new(l)));
        }
        versions.push(v);
    }
    if let Selection::All = selection {
        let refs = store.hf_refs()?;
        for (key, commit) in store.hf_listings()? {
            let name = key.strip_prefix("models/").map(str::to_owned).or_else(|| {
                key.strip_prefix("datasets/")
                    .map(|n| format!("datasets/{n}"))
            });
            let Some(name) = name else { continue };
            let names: Vec<String> = refs
                .iter()
                .filter(|(k, _, c)| *k == key && *c == commit)
                .map(|(_, n, _)| n.clone())
                .collect();
            // Only versions held in full are Ready; the rest are skipped, not half-exported.
            if let Ok((v, l)) = hf_version(store, &name, commit, None, names) {
                small.push((ItemKind::Listing, Arc::new(l)));
                versions.push(v);
            }
        }
        let mut by_manifest: HashMap<(String, Digest), Vec<String>> = HashMap::new();
        for (key, tag, digest) in store.ollama_tags()? {
            if let Some(name) = key.strip_prefix("ollama/") {
                by_manifest
                    .entry((name.to_owned(), digest))
                    .or_default()
                    .push(tag);
            }
        }
        let mut keys: Vec<_> = by_manifest.into_iter().collect();
        keys.sort();
        for ((name, digest), tags) in keys {
            if let Ok(v) = ollama_version(store, &name, digest, None, tags) {
                versions.push(v);
            }
        }
    }
    // A differential bundle leaves out the versions its base carried, and the blobs and
    // approvals it carried (the importing side must hold them, and checks that it does).
    let (since_digest, carried, carried_versions) = match since {
        Some(path) => {
            let bytes = read_bounded(path, MAX_MANIFEST)?;
            let old: BundleManifest =
                serde_json::from_slice(&bytes).map_err(|e| MirrorError::Bundle {
                    item: path.display().to_string(),
                    reason: format!("not a bundle manifest: {e}"),
                })?;
            (
                Some(Digest::of(&bytes)),
                old.items
                    .iter()
                    .filter(|i| matches!(i.kind, ItemKind::Blob | ItemKind::Approval))
                    .map(|i| i.sha256)
                    .collect::<HashSet<_>>(),
                old.versions
                    .iter()
                    .map(Version::label)
                    .collect::<HashSet<_>>(),
            )
        }
        None => (None, HashSet::new(), HashSet::new()),
    };
    versions.retain(|v| !carried_versions.contains(&v.label()));
    let wanted: HashSet<Digest> = versions
        .iter()
        .filter_map(|v| match v {
            Version::Hf { listing, .. } => Some(*listing),
            Version::Ollama { .. } => None,
        })
        .collect();
    small.retain(|(kind, b)| *kind != ItemKind::Listing || wanted.contains(&Digest::of(b)));

    // Every revocation travels (they are small), so one revoked on the connected side stops
    // serving on the far side with the next bundle whatever it selects.
    for r in gov.signed_revocations()? {
        let json = r.to_json().map_err(crate::governance::signing_err)?;
        small.push((ItemKind::Revocation, Arc::new(json.into_bytes())));
    }
    for v in &versions {
        let approval = chosen.iter().find(|a| match v {
            Version::Hf { approval, .. } | Version::Ollama { approval, .. } => {
                approval.as_ref() == Some(&a.id)
            }
        });
        let bom =
            serde_json::to_vec_pretty(&bom_of(v, approval.map(|a| &a.record))).map_err(|e| {
                MirrorError::Bundle {
                    item: v.label(),
                    reason: e.to_string(),
                }
            })?;
        small.push((ItemKind::Bom, Arc::new(bom)));
    }

    let mut items = Vec::new();
    let mut sources: HashMap<Digest, ItemSource> = HashMap::new();
    let mut offset = 0u64;
    let mut push = |kind: ItemKind, sha256: Digest, size: u64, src: ItemSource| {
        if carried.contains(&sha256) || sources.contains_key(&sha256) {
            return;
        }
        items.push(Item {
            kind,
            sha256,
            size,
            offset,
        });
        offset += size;
        sources.insert(sha256, src);
    };
    for (kind, bytes) in &small {
        push(
            *kind,
            Digest::of(bytes),
            bytes.len() as u64,
            ItemSource::Bytes(bytes.clone()),
        );
    }
    for v in &versions {
        for (digest, _) in v.blobs() {
            let size = store.blob_size(&digest)?;
            push(
                ItemKind::Blob,
                digest,
                size,
                ItemSource::Blob(store.cas().clone()),
            );
        }
    }
    drop(push);
    let total = offset;

    std::fs::create_dir_all(out).map_err(MirrorError::io(out))?;
    let plan =
        Digest::of(
            &serde_json::to_vec(&(&items, part_size)).map_err(|e| MirrorError::Bundle {
                item: "plan".into(),
                reason: e.to_string(),
            })?,
        );
    let progress_path = out.join(PROGRESS_FILE);
    let mut done: Vec<Part> = match std::fs::read(&progress_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<ProgressFile>(&b).ok())
    {
        Some(p) if p.plan == plan => p.parts,
        _ => Vec::new(),
    };
    let n_parts = total.div_ceil(part_size) as usize;
    let mut parts = Vec::with_capacity(n_parts);
    let (mut written, mut kept) = (0, 0);
    for i in 0..n_parts {
        let start = i as u64 * part_size;
        let end = (start + part_size).min(total);
        let name = part_name(i);
        let path = out.join(&name);
        if let Some(p) = done.iter().find(|p| p.name == name) {
            if p.size == end - start && hash_file(&path).ok() == Some((p.sha256, p.size)) {
                parts.push(p.clone());
                kept += 1;
                progress(end, total);
                continue;
            }
        }
        let part = write_part(&path, &name, start, end, &items, &sources, total, progress)?;
        done.retain(|p| p.name != name);
        done.push(part.clone());
        write_atomically(
            &progress_path,
            &serde_json::to_vec(&ProgressFile {
                plan,
                parts: done.clone(),
            })
            .map_err(|e| MirrorError::Bundle {
                item: PROGRESS_FILE.into(),
                reason: e.to_string(),
            })?,
        )?;
        parts.push(part);
        written += 1;
    }
    // Parts of an earlier, larger bundle in the same directory would be mistaken for this one's.
    for i in n_parts.. {
        let stale = out.join(part_name(i));
        if !stale.exists() {
            break;
        }
        std::fs::remove_file(&stale).map_err(MirrorError::io(&stale))?;
    }

    let key = crate::governance::mirror_key(gov.data_dir())?;
    let manifest = BundleManifest {
        format: FORMAT.into(),
        exporter: key.public().id(),
        created_at: now,
        since: since_digest,
        part_size,
        parts,
        items,
        versions,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).map_err(|e| MirrorError::Bundle {
        item: MANIFEST_FILE.into(),
        reason: e.to_string(),
    })?;
    let sig = signing::sign_bundle(&bytes, &key);
    write_atomically(&out.join(SIGNATURE_FILE), sig.as_bytes())?;
    write_atomically(&out.join(MANIFEST_FILE), &bytes)?;
    let _ = std::fs::remove_file(&progress_path);
    let bundle = Digest::of(&bytes);
    let labels: Vec<String> = manifest.versions.iter().map(Version::label).collect();
    gov.audit(AuditEvent::Export {
        bundle,
        versions: labels.clone(),
        items: manifest.items.len() as u64,
        bytes: total,
    });
    Ok(Exported {
        bundle,
        versions: labels,
        items: manifest.items.len() as u64,
        bytes: total,
        parts_written: written,
        parts_kept: kept,
    })
}

/// Writes the stream range `[start, end)` into one part, hashing it as it goes. The hashing
/// runs on a second thread, so it overlaps reading and writing (export keeps pace with `tar`); a
/// few chunk buffers circulate between the two threads, so memory stays bounded.
#[allow(clippy::too_many_arguments)]
fn write_part(
    path: &Path,
    name: &str,
    start: u64,
    end: u64,
    items: &[Item],
    sources: &HashMap<Digest, ItemSource>,
    total: u64,
    progress: &dyn Fn(u64, u64),
) -> Result<Part, MirrorError> {
    const BUFFERS: usize = 4;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(MirrorError::io(&tmp))?;
    let (hash_tx, hash_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Vec<u8>>();
    for _ in 0..BUFFERS {
        let _ = back_tx.send(vec![0u8; CHUNK]);
    }
    let (written, out) = std::thread::scope(|scope| {
        // Owned by this closure, so that an unwinding panic drops it and the hasher ends
        // before the scope waits for it.
        let hash_tx = hash_tx;
        let hasher = scope.spawn(move || {
            let mut h = verifier::Hasher::new(None);
            for (b, n) in hash_rx.iter() {
                h.update(&b[..n]);
                let _ = back_tx.send(b);
            }
            h.finish()
        });
        let written = (|| -> Result<(), MirrorError> {
            // Items overlapping the range: the first is found by binary search on the offsets.
            let first = items.partition_point(|i| i.offset + i.size <= start);
            for item in items[first..].iter().take_while(|i| i.offset < end) {
                let from = start.max(item.offset) - item.offset;
                let to = end.min(item.offset + item.size) - item.offset;
                let mut src = match sources.get(&item.sha256) {
                    Some(ItemSource::Blob(cas)) => Some((
                        cas.reader_from(&item.sha256, from)?,
                        item.sha256.to_string(),
                    )),
                    Some(ItemSource::Bytes(_)) => None,
                    None => {
                        return Err(MirrorError::Bundle {
                            item: item.sha256.to_string(),
                            reason: "no source for a planned item (a bug)".into(),
                        })
                    }
                };
                let mut at = from;
                while at < to {
                    let Ok(mut b) = back_rx.recv() else {
                        return Err(MirrorError::Task("part hasher stopped".into()));
                    };
                    let n = ((to - at) as usize).min(b.len());
                    match (&mut src, sources.get(&item.sha256)) {
                        (Some((f, p)), _) => f
                            .read_exact(&mut b[..n])
                            .map_err(MirrorError::io(p.as_str()))?,
                        (None, Some(ItemSource::Bytes(bytes))) => {
                            b[..n].copy_from_slice(&bytes[at as usize..at as usize + n])
                        }
                        (None, _) => unreachable!("sources checked above"),
                    }
                    file.write_all(&b[..n]).map_err(MirrorError::io(&tmp))?;
                    at += n as u64;
                    if hash_tx.send((b, n)).is_err() {
                        return Err(MirrorError::Task("part hasher stopped".into()));
                    }
                    progress(item.offset + at, total);
                }
            }
            Ok(())
        })();
        drop(hash_tx);
        let out = hasher.join();
        (written, out)
    });
    written?;
    let out = out.map_err(|_| MirrorError::Task("part hasher panicked".into()))?;
    file.sync_all().map_err(MirrorError::io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(MirrorError::io(path))?;
    progress(end, total);
    Ok(Part {
        name: name.to_owned(),
        sha256: out.sha256,
        size: out.len,
    })
}

/// sha256 and length of a file.
pub(super) fn hash_file(path: &Path) -> Result<(Digest, u64), MirrorError> {
    let mut f = std::fs::File::open(path).map_err(MirrorError::io(path))?;
    let mut hasher = verifier::Hasher::new(None);
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf).map_err(MirrorError::io(path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let out = hasher.finish();
    Ok((out.sha256, out.len))
}

/// Temp file, fsync, rename: a reader sees the old file or the new one, never half of one.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), MirrorError> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(MirrorError::io(&tmp))?;
    f.write_all(bytes).map_err(MirrorError::io(&tmp))?;
    f.sync_all().map_err(MirrorError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(MirrorError::io(path))
}

/// Describes one HF commit from the store: its files (the approval's, or every file of the
/// listing), each with its verified record; and the listing cut down to those files.
pub(crate) fn hf_version(
    store: &Store,
    name: &str,
    commit: Revision,
    approval: Option<&Approval>,
    refs: Vec<String>,
) -> Result<(Version, Vec<u8>), MirrorError> {
    let label = format!("hf {name}@{commit}");
    let bad = |reason: String| MirrorError::Bundle {
        item: label.clone(),
        reason,
    };
    let repo = hf_repo(name).map_err(|e| bad(e.to_string()))?;
    let listing = store
        .get_manifest(&repo, commit)?
        .ok_or_else(|| bad("no listing of this commit in the store".into()))?;
    let paths: Vec<String> = match approval {
        Some(a) => a.record.files.iter().map(|f| f.path.clone()).collect(),
        None => listing.files().map(|e| e.path.to_string()).collect(),
    };
    let mut files = Vec::new();
    for path in &paths {
        let entry = listing
            .get(path)
            .filter(|e| e.kind == EntryKind::File)
            .ok_or_else(|| bad(format!("{path} is not in the commit's listing")))?;
        let rec = store
            .get_file(&repo, commit, &entry.path)?
            .filter(|r| store.has_blob(&r.digest))
            .ok_or_else(|| {
                bad(format!(
                    "{path} is not held verified in the store (fetch the version first)"
                ))
            })?;
        if let Some(pin) = approval.and_then(|a| a.record.file(path)) {
            if pin.sha256 != rec.digest || pin.size != rec.size {
                return Err(bad(format!("{path} differs from its approved sha256")));
            }
        }
        files.push(VersionFile {
            path: path.clone(),
            sha256: rec.digest,
            size: rec.size,
            etag: rec.etag,
            scan: rec.scan,
        });
    }
    let kept: HashSet<&str> = paths.iter().map(String::as_str).collect();
    let cut = Manifest::new(
        listing
            .entries
            .iter()
            .filter(|e| e.kind == EntryKind::Directory || kept.contains(e.path.as_str()))
            .cloned()
            .collect(),
    );
    let listing_bytes = serde_json::to_vec(&cut).map_err(|e| bad(e.to_string()))?;
    let license = approval.and_then(|a| a.record.license.clone()).or_else(|| {
        let readme = files.iter().find(|f| f.path == "README.md")?;
        let text = store.read_small_blob(&readme.sha256, 1 << 20).ok()?;
        licence_of_model_card(&String::from_utf8_lossy(&text))
    });
    Ok((
        Version::Hf {
            name: approval.map_or_else(|| name.to_owned(), |a| a.record.name.clone()),
            commit,
            refs,
            listing: Digest::of(&listing_bytes),
            files,
            approval: approval.map(|a| a.id.clone()),
            license,
        },
        listing_bytes,
    ))
}

/// Describes one Ollama manifest from the store, with every blob it lists.
pub(crate) fn ollama_version(
    store: &Store,
    name: &str,
    digest: Digest,
    approval: Option<&Approval>,
    tags: Vec<String>,
) -> Result<Version, MirrorError> {
    let label = format!("ollama {name}@{digest}");
    let bad = |reason: String| MirrorError::Bundle {
        item: label.clone(),
        reason,
    };
    let oname = ollama_name(name).map_err(|e| bad(e.to_string()))?;
    let rec = store
        .get_oci_manifest(&digest)?
        .filter(|_| store.has_blob(&digest))
        .ok_or_else(|| bad("manifest not held in the store".into()))?;
    let bytes = store.read_small_blob(&digest, MAX_OCI_MANIFEST as u64)?;
    let listed = crate::pipeline::manifest_layers(&bytes).map_err(bad)?;
    let mut layers = Vec::new();
    for (d, layer) in listed {
        let blob = store
            .get_blob_record(&d)?
            .filter(|_| store.has_blob(&d))
            .ok_or_else(|| {
                bad(format!(
                    "layer {d} is not held verified in the store (pull the model first)"
                ))
            })?;
        layers.push(VersionFile {
            path: layer.media_type,
            sha256: d,
            size: layer.size,
            etag: d.hex(),
            scan: blob.scan,
        });
    }
    Ok(Version::Ollama {
        name: approval.map_or_else(|| oname.to_string(), |a| a.record.name.clone()),
        manifest: digest,
        content_type: rec.content_type,
        tags,
        layers,
        approval: approval.map(|a| a.id.clone()),
        license: approval.and_then(|a| a.record.license.clone()),
    })
}
