//! `airlock import`: takes a bundle into an (offline) mirror, trusting nothing in it but what its
//! signed manifest and this side's own configuration vouch for.
//!
//! Two phases. **Check** (nothing visible, the index not even opened): the manifest's signature
//! against `[airgap] trusted_exporters`; the manifest's own consistency; every part present at
//! its size; free space; every item read in place from the parts, streamed through a quarantine
//! writer (hashed as it is written, size-limited) and compared with the manifest; every blob
//! scanned as an upstream fetch would be; listings, OCI manifests and approval records checked
//! against the versions, approvals against this side's `[governance] keys`, signatures against its
//! `[[trust]]` rules. Checked blobs wait in `import/<bundle>/` (same filesystem as `blobs/`).
//! **Commit**, only if all of that passed: rename the blobs into `blobs/`, write the records and
//! index entries, audit. A refusal deletes the staging directory, so the store is exactly as
//! before; an interruption keeps it, so a re-run resumes where it stopped.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use signing::{AuditEvent, KeyId, PublicKey, SignedApproval, SignedRevocation, SigningError};
use verifier::{Digest, GitOid};

use super::export::hash_file;
use super::{
    hf_repo, ollama_name, part_name, read_bounded, BundleManifest, Item, ItemKind, Version, CHUNK,
    FORMAT, MANIFEST_FILE, MAX_MANIFEST, MAX_SMALL_ITEM, SIGNATURE_FILE,
};
use crate::config::Config;
use crate::error::MirrorError;
use crate::governance::{mirror_key, now, signing_err, Governance};
use crate::manifest::{EntryKind, Manifest};
use crate::names::{RepoPath, RevisionName, Tag};
use crate::quarantine::{WriteError, Writer};
use crate::store::{FileRecord, LayerRecord, ManifestRecord, Store};
use crate::trust::{Requirement, Trust};
use crate::upstream::oci::MAX_MANIFEST as MAX_OCI_MANIFEST;

/// The outcome of an import.
#[derive(Debug)]
pub enum Imported {
    /// Every check passed and the versions are served.
    Done {
        /// sha256 of the bundle's manifest.
        bundle: Digest,
        /// The exporting mirror's key.
        exporter: KeyId,
        /// The versions it carried.
        versions: Vec<String>,
        /// Blobs new to this store.
        new_blobs: u64,
        /// Their bytes.
        new_bytes: u64,
    },
    /// The bundle was refused; the store is as it was.
    Refused {
        /// The first bad item (a part, the manifest, a version's file, a record).
        item: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// A refusal in the making: the first bad item and why.
struct Bad {
    item: String,
    reason: String,
}

fn bad(item: impl Into<String>, reason: impl Into<String>) -> Bad {
    Bad {
        item: item.into(),
        reason: reason.into(),
    }
}

/// Either a refusal of the bundle or a failure of this machine (disk, index).
enum Stop {
    Bad(Bad),
    Err(MirrorError),
}

impl From<MirrorError> for Stop {
    fn from(e: MirrorError) -> Self {
        Stop::Err(e)
    }
}

impl From<Bad> for Stop {
    fn from(b: Bad) -> Self {
        Stop::Bad(b)
    }
}

/// Reads stream ranges from the parts in place (no joined copy).
struct Parts {
    dir: PathBuf,
    names: Vec<String>,
    starts: Vec<u64>,
    open: Option<(usize, File)>,
}

impl Parts {
    /// Fills `out` from the stream at `pos` (across part boundaries).
    fn fill(&mut self, mut pos: u64, out: &mut [u8]) -> Result<(), MirrorError> {
        let mut done = 0;
        while done < out.len() {
            let i = self.starts.partition_point(|s| *s <= pos).max(1) - 1;
            let part_end = self.starts.get(i + 1).copied().unwrap_or(u64::MAX);
            let path = self.dir.join(&self.names[i]);
            let file = match &mut self.open {
                Some((j, f)) if *j == i => f,
                slot => {
                    let f = File::open(&path).map_err(MirrorError::io(&path))?;
                    &mut slot.insert((i, f)).1
                }
            };
            file.seek(SeekFrom::Start(pos - self.starts[i]))
                .map_err(MirrorError::io(&path))?;
            let n = ((part_end - pos) as usize).min(out.len() - done);
            file.read_exact(&mut out[done..done + n])
                .map_err(MirrorError::io(&path))?;
            done += n;
            pos += n as u64;
        }
        Ok(())
    }

    /// Calls `f` with consecutive chunks of the stream range `[offset, offset + len)`.
    fn read(
        &mut self,
        offset: u64,
        len: u64,
        buf: &mut [u8],
        f: &mut dyn FnMut(&[u8]) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        let (mut pos, end) = (offset, offset + len);
        while pos < end {
            let n = ((end - pos) as usize).min(buf.len());
            self.fill(pos, &mut buf[..n])?;
            f(&buf[..n])?;
            pos += n as u64;
        }
        Ok(())
    }

    /// [`Parts::read`] with the reading on a second thread, so that reading the parts overlaps
    /// hashing and writing the quarantine copy (a large blob keeps both cores busy). A few
    /// chunk buffers circulate between the two threads: memory stays bounded.
    fn read_pipelined(
        &mut self,
        offset: u64,
        len: u64,
        f: &mut dyn FnMut(&[u8]) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        const BUFFERS: usize = 4;
        let (full_tx, full_rx) = std::sync::mpsc::sync_channel::<(Vec<u8>, usize)>(BUFFERS);
        let (empty_tx, empty_rx) = std::sync::mpsc::channel::<Vec<u8>>();
        for _ in 0..BUFFERS {
            let _ = empty_tx.send(vec![0u8; CHUNK]);
        }
        std::thread::scope(|scope| {
            // Owned by this closure, so that an unwinding panic drops them and the reader ends
            // before the scope waits for it.
            let (empty_tx, full_rx) = (empty_tx, full_rx);
            let reader = scope.spawn(move || -> Result<(), MirrorError> {
                let (mut pos, end) = (offset, offset + len);
                while pos < end {
                    // The consumer stopped (an error of its own): nothing more to read.
                    let Ok(mut b) = empty_rx.recv() else {
                        return Ok(());
                    };
                    let n = ((end - pos) as usize).min(b.len());
                    self.fill(pos, &mut b[..n])?;
                    if full_tx.send((b, n)).is_err() {
                        return Ok(());
                    }
                    pos += n as u64;
                }
                Ok(())
            });
            let mut outcome = Ok(());
            for (b, n) in full_rx.iter() {
                if let Err(e) = f(&b[..n]) {
                    outcome = Err(e);
                    break;
                }
                let _ = empty_tx.send(b);
            }
            drop(empty_tx);
            drop(full_rx);
            let read = reader
                .join()
                .unwrap_or_else(|_| Err(MirrorError::Task("bundle reader panicked".into())));
            outcome?;
            read.map_err(Stop::Err)
        })
    }

    /// The parts a stream range lies in.
    fn covering(&self, offset: u64, len: u64) -> std::ops::Range<usize> {
        let first = self.starts.partition_point(|s| *s <= offset).max(1) - 1;
        let last = self.starts.partition_point(|s| *s < offset + len.max(1));
        first..last.max(first + 1)
    }
}

/// Imports the bundle in `dir` into the store of `cfg`. `progress(done, total)` is called as
/// items are checked. Blocking; the server must be stopped for the commit (sled is
/// single-process), though the check phase runs without touching the index.
pub fn import(
    cfg: &Config,
    dir: &Path,
    progress: &dyn Fn(u64, u64),
) -> Result<Imported, MirrorError> {
    let data_dir = &cfg.data_dir;
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = match read_bounded(&manifest_path, MAX_MANIFEST) {
        Ok(b) => b,
        Err(e) => {
            return Ok(Imported::Refused {
                item: MANIFEST_FILE.into(),
                reason: e.to_string(),
            })
        }
    };
    let bundle = Digest::of(&bytes);
    let staging = data_dir.join("import").join(bundle.hex());
    let outcome = check_and_commit(cfg, dir, &bytes, bundle, &staging, progress);
    let (event, result) = match outcome {
        Ok((exporter, versions, new_blobs, new_bytes)) => {
            remove_staging(&staging);
            (
                None,
                Imported::Done {
                    bundle,
                    exporter,
                    versions,
                    new_blobs,
                    new_bytes,
                },
            )
        }
        Err(Stop::Bad(b)) => {
            remove_staging(&staging);
            let reason = format!("{}: {}", b.item, b.reason);
            (
                Some(reason),
                Imported::Refused {
                    item: b.item,
                    reason: b.reason,
                },
            )
        }
        // Kept for a resumed run: what is staged has passed its checks.
        Err(Stop::Err(e)) => return Err(e),
    };
    if let Some(reason) = event {
        // A refused bundle is evidence (tampering on the way in): it goes into the audit log,
        // which is the one file a refusal changes.
        let log = signing::AuditLog::open(&data_dir.join("audit.log"), mirror_key(data_dir)?)
            .map_err(signing_err)?;
        log.append(
            &AuditEvent::Import {
                bundle,
                exporter: None,
                versions: Vec::new(),
                items: 0,
                bytes: 0,
                refused: Some(reason),
            },
            now(),
        )
        .map_err(signing_err)?;
    }
    Ok(result)
}

fn remove_staging(staging: &Path) {
    let _ = std::fs::remove_dir_all(staging);
    if let Some(parent) = staging.parent() {
        let _ = std::fs::remove_dir(parent); // only if empty
    }
}

/// What the check phase learned about one blob.
struct Checked {
    /// Where its verified bytes are: in staging, or already in `blobs/`.
    path: PathBuf,
    staged: bool,
    scan: String,
    git_oid: Option<GitOid>,
}

type Outcome = (KeyId, Vec<String>, u64, u64);

fn check_and_commit(
    cfg: &Config,
    dir: &Path,
    bytes: &[u8],
    bundle: Digest,
    staging: &Path,
    progress: &dyn Fn(u64, u64),
) -> Result<Outcome, Stop> {
    let data_dir = &cfg.data_dir;
    // The scan runs with this side's `[scan] allow_globals`, exactly as an upstream fetch here would.
    let mut scan_options = verifier::ScanOptions::new();
    for g in &cfg.scan.allow_globals {
        scan_options = scan_options
            .allow_global(g)
            .map_err(|e| MirrorError::Config(format!("[scan] allow_globals: {e}")))?;
    }
    // 1. The signature, against this side's list of exporters only.
    if cfg.airgap.trusted_exporters.is_empty() {
        return Err(MirrorError::Config(
            "[airgap] trusted_exporters is empty: list the connected mirror's mirror.pub to import its bundles".into(),
        )
        .into());
    }
    let mut exporters = Vec::new();
    for p in &cfg.airgap.trusted_exporters {
        exporters.push(PublicKey::read(p).map_err(signing_err)?);
    }
    let sig_path = dir.join(SIGNATURE_FILE);
    let sig = read_bounded(&sig_path, 4096).map_err(|e| bad(SIGNATURE_FILE, e.to_string()))?;
    let exporter = match signing::verify_bundle(bytes, &sig, &exporters) {
        Ok(k) => k,
        Err(SigningError::UnknownSigner { key }) => {
            return Err(bad(
                SIGNATURE_FILE,
                format!("signed by key {key}, which is not in [airgap] trusted_exporters"),
            )
            .into())
        }
        Err(SigningError::BadSignature { key }) => {
            return Err(bad(
                MANIFEST_FILE,
                format!("the signature by exporter {key} does not verify: the manifest was changed after it was signed"),
            )
            .into())
        }
        Err(e) => return Err(bad(SIGNATURE_FILE, e.to_string()).into()),
    };
    let m: BundleManifest = serde_json::from_slice(bytes)
        .map_err(|e| bad(MANIFEST_FILE, format!("not a bundle manifest: {e}")))?;

    // 2. The manifest's own consistency: parts in order, items tiling the stream.
    if m.format != FORMAT {
        return Err(bad(MANIFEST_FILE, format!("unknown format {:?}", m.format)).into());
    }
    let mut starts = Vec::with_capacity(m.parts.len());
    let mut total = 0u64;
    for (i, p) in m.parts.iter().enumerate() {
        if p.name != part_name(i) || p.size > m.part_size {
            return Err(bad(
                MANIFEST_FILE,
                format!("part {} is out of order or too large", p.name),
            )
            .into());
        }
        starts.push(total);
        total = total
            .checked_add(p.size)
            .ok_or_else(|| bad(MANIFEST_FILE, "part sizes overflow"))?;
    }
    let mut at = 0u64;
    for item in &m.items {
        if item.offset != at {
            return Err(bad(
                MANIFEST_FILE,
                format!(
                    "item {} does not start where the one before ended",
                    item.sha256
                ),
            )
            .into());
        }
        at = at
            .checked_add(item.size)
            .ok_or_else(|| bad(MANIFEST_FILE, "sizes overflow"))?;
    }
    if at != total {
        return Err(bad(
            MANIFEST_FILE,
            format!("items cover {at} bytes, the parts {total}"),
        )
        .into());
    }

    // 3. Every part present at its size (a missing or truncated part is named before any read).
    for p in &m.parts {
        let path = dir.join(&p.name);
        match std::fs::metadata(&path) {
            Err(_) => return Err(bad(&p.name, "missing from the bundle").into()),
            Ok(meta) if meta.len() != p.size => {
                return Err(bad(
                    &p.name,
                    format!(
                        "is {} bytes, the manifest says {} (truncated or replaced)",
                        meta.len(),
                        p.size
                    ),
                )
                .into())
            }
            Ok(_) => {}
        }
    }

    // What each blob is, for messages and for the checks that depend on it.
    let mut what: HashMap<Digest, String> = HashMap::new();
    let mut formats: HashMap<Digest, &'static [verifier::Format]> = HashMap::new();
    for v in &m.versions {
        match v {
            Version::Hf { files, .. } => {
                for f in files {
                    what.entry(f.sha256)
                        .or_insert_with(|| format!("{} file {}", v.label(), f.path));
                }
            }
            Version::Ollama {
                layers, manifest, ..
            } => {
                what.entry(*manifest)
                    .or_insert_with(|| format!("{} manifest", v.label()));
                for f in layers {
                    what.entry(f.sha256)
                        .or_insert_with(|| format!("{} layer {} {}", v.label(), f.path, f.sha256));
                    if let Some(fm) = crate::pipeline::layer_formats(&f.path) {
                        formats.insert(f.sha256, fm);
                    }
                }
            }
        }
    }
    // Held blobs are re-scanned and hashed from their files, so an import needs local blobs.
    if cfg.store.backend != crate::config::StoreBackend::Local {
        return Err(MirrorError::Config(
            "airlock import writes into the local blob backend only ([store] backend = \"local\"); \
             import on a local mirror, then copy its blobs into the bucket"
                .into(),
        )
        .into());
    }
    let local = crate::cas::LocalCas::at(data_dir);
    let blob_path = |d: &Digest| local.path(d);
    let mut parts = Parts {
        dir: dir.to_owned(),
        names: m.parts.iter().map(|p| p.name.clone()).collect(),
        starts,
        open: None,
    };
    let mut buf = vec![0u8; CHUNK];
    // An item that does not hash to its name: say which part is bad, if one is.
    let item_failed = |parts: &Parts, item: &Item, reason: String| -> Stop {
        let label = what
            .get(&item.sha256)
            .cloned()
            .unwrap_or_else(|| format!("{:?} item {}", item.kind, item.sha256));
        for i in parts.covering(item.offset, item.size) {
            let p = &m.parts[i];
            if hash_file(&dir.join(&p.name)).ok() != Some((p.sha256, p.size)) {
                return Stop::Bad(bad(
                    &p.name,
                    format!("does not match its sha256 in the manifest (a changed byte, or a part of another bundle); first bad item: {label}: {reason}"),
                ));
            }
        }
        Stop::Bad(bad(label, reason))
    };

    // 4. The small items (records, listings, BOMs), read into memory and hashed.
    let mut small: HashMap<Digest, Vec<u8>> = HashMap::new();
    for item in m.items.iter().filter(|i| i.kind != ItemKind::Blob) {
        if item.size > MAX_SMALL_ITEM {
            return Err(bad(format!("{:?} item {}", item.kind, item.sha256), "too large").into());
        }
        let mut out = Vec::with_capacity(item.size as usize);
        parts.read(item.offset, item.size, &mut buf, &mut |c| {
            out.extend_from_slice(c);
            Ok(())
        })?;
        if Digest::of(&out) != item.sha256 {
            return Err(item_failed(
                &parts,
                item,
                "sha256 does not match the manifest".into(),
            ));
        }
        small.insert(item.sha256, out);
    }

    // 5. Approvals and revocations, against this side's governance keys only (a revoked key's
    // records count only from before its revocation, as at serving time).
    let keyring = crate::governance::keyring::Keyring::load(
        &cfg.governance.keys,
        &cfg.governance.revoked_keys,
    )?;
    let gov_keys = keyring.for_loading();
    let mut approvals = Vec::new();
    let mut revocations = Vec::new();
    for item in &m.items {
        let label = |kind: &str| format!("{kind} record {}", item.sha256);
        match item.kind {
            ItemKind::Approval => {
                let s = SignedApproval::from_json(&small[&item.sha256])
                    .map_err(|e| bad(label("approval"), e.to_string()))?;
                let id = s.id().map_err(|e| bad(label("approval"), e.to_string()))?;
                s.verify(&gov_keys).map_err(|e| {
                    bad(
                        format!("approval {id}"),
                        format!("{e} on this mirror ([governance] keys)"),
                    )
                })?;
                keyring
                    .check(s.signed_by(), s.record().approved_at)
                    .map_err(|why| bad(format!("approval {id}"), why))?;
                approvals.push((id, s));
            }
            ItemKind::Revocation => {
                let s = SignedRevocation::from_json(&small[&item.sha256])
                    .map_err(|e| bad(label("revocation"), e.to_string()))?;
                s.verify(&gov_keys).map_err(|e| {
                    bad(
                        label("revocation"),
                        format!("{e} on this mirror ([governance] keys)"),
                    )
                })?;
                keyring
                    .check(s.signed_by(), s.record().revoked_at)
                    .map_err(|why| bad(label("revocation"), why))?;
                revocations.push(s);
            }
            _ => {}
        }
    }
    // Approvals a differential bundle refers to but does not carry must already be here.
    let (local, _) =
        signing::load_dir(&data_dir.join("approvals"), &gov_keys).map_err(signing_err)?;
    let find_approval = |id: &signing::ApprovalId| {
        approvals
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, s)| s.record().clone())
            .or_else(|| {
                local
                    .iter()
                    .find(|s| s.id().ok().as_ref() == Some(id))
                    .map(|s| s.record().clone())
            })
    };
    // A version's approval must be present (in the bundle or here) and be for exactly this
    // source, name and revision.
    let approval_for = |label: &str,
                        id: &signing::ApprovalId,
                        source: signing::Source,
                        name: &str,
                        revision: &str|
     -> Result<signing::ApprovalRecord, Stop> {
        let rec = find_approval(id).ok_or_else(|| {
            bad(
                label,
                format!("approval {id} is neither in the bundle nor on this mirror"),
            )
        })?;
        if rec.source != source || !rec.name.eq_ignore_ascii_case(name) || rec.revision != revision
        {
            return Err(bad(
                label,
                format!("approval {id} is for {} {}", rec.name, rec.revision),
            )
            .into());
        }
        Ok(rec)
    };

    // 6. Free space: every blob not already held.
    let needed: u64 = m
        .items
        .iter()
        .filter(|i| i.kind == ItemKind::Blob && !blob_path(&i.sha256).is_file())
        .map(|i| i.size)
        .sum();
    std::fs::create_dir_all(staging).map_err(MirrorError::io(staging))?;
    let free = fs2::available_space(staging).map_err(MirrorError::io(staging))?;
    if free < needed {
        return Err(bad(
            data_dir.display().to_string(),
            format!("the import needs {needed} bytes of free space, the filesystem has {free}"),
        )
        .into());
    }

    // Which blobs are files kept in git by some listing (their git blob id is checked too).
    let mut listings: HashMap<Digest, Manifest> = HashMap::new();
    for v in &m.versions {
        if let Version::Hf { listing, .. } = v {
            let Some(b) = small.get(listing) else {
                return Err(bad(
                    v.label(),
                    format!("its listing {listing} is not in the bundle"),
                )
                .into());
            };
            let l: Manifest = serde_json::from_slice(b).map_err(|e| {
                bad(
                    format!("{} listing", v.label()),
                    format!("not a listing: {e}"),
                )
            })?;
            listings.insert(*listing, l);
        }
    }
    let mut git_sized: HashMap<Digest, u64> = HashMap::new();
    for v in &m.versions {
        if let Version::Hf { listing, files, .. } = v {
            for f in files {
                if let Some(e) = listings[listing].get(&f.path) {
                    if e.lfs.is_none() {
                        git_sized.insert(f.sha256, f.size);
                    }
                }
            }
        }
    }

    // 7. Every blob: quarantine writer (hash as written, size-limited), compare, scan, stage.
    let mut checked: HashMap<Digest, Checked> = HashMap::new();
    let mut done = 0u64;
    for item in m.items.iter().filter(|i| i.kind == ItemKind::Blob) {
        let git_size = git_sized.get(&item.sha256).copied();
        let label = what
            .get(&item.sha256)
            .cloned()
            .unwrap_or_else(|| format!("blob {}", item.sha256));
        let staged = staging.join(item.sha256.hex());
        let held = blob_path(&item.sha256);
        let c = if held.is_file() || staged.is_file() {
            // Verified before, by this store or by this import before it was interrupted. Bytes
            // already held are still hashed from the bundle (not written): a tampered bundle is
            // refused even where it would change nothing. Staged bytes are the resume: skipped.
            let is_staged = !held.is_file();
            if !is_staged {
                let mut h = verifier::Hasher::new(None);
                parts.read_pipelined(item.offset, item.size, &mut |c| {
                    h.update(c);
                    Ok(())
                })?;
                let got = h.finish();
                if got.sha256 != item.sha256 {
                    return Err(item_failed(
                        &parts,
                        item,
                        format!(
                            "sha256 mismatch: the manifest declares {}, the bytes hash to {}",
                            item.sha256.hex(),
                            got.sha256.hex()
                        ),
                    ));
                }
            }
            let path = if is_staged { staged } else { held };
            let git_oid = match git_size {
                Some(n) => git_oid_of(&path, n)?,
                None => None,
            };
            let scan = scan_file(
                &path,
                item.size,
                formats.get(&item.sha256).copied(),
                &scan_options,
            )?
            .map_err(|r| bad(&label, format!("refused by the scan: {r}")))?;
            Checked {
                path,
                staged: is_staged,
                scan,
                git_oid,
            }
        } else {
            let mut w = Writer::create(staging, item.size, git_size)?;
            // A write refusal (too many bytes, a short stream) is the bundle's fault; an I/O
            // failure is ours.
            let stop = |label: &str, e: WriteError| match e {
                WriteError::Mirror(m) => Stop::Err(m),
                WriteError::TooLarge { limit } => {
                    Stop::Bad(bad(label, format!("more than the declared {limit} bytes")))
                }
                other => Stop::Bad(bad(label, other.to_string())),
            };
            let mut write =
                |c: &[u8]| -> Result<(), Stop> { w.write(c).map_err(|e| stop(&label, e)) };
            parts.read_pipelined(item.offset, item.size, &mut write)?;
            let mut q = w.finish().map_err(|e| stop(&label, e))?;
            let got = q.outcome().clone();
            if got.len != item.size || got.sha256 != item.sha256 {
                return Err(item_failed(
                    &parts,
                    item,
                    format!(
                        "sha256 mismatch: the manifest declares {}, the bytes hash to {}",
                        item.sha256.hex(),
                        got.sha256.hex()
                    ),
                ));
            }
            let scan = scan_file(
                q.path(),
                item.size,
                formats.get(&item.sha256).copied(),
                &scan_options,
            )?
            .map_err(|r| bad(&label, format!("refused by the scan: {r}")))?;
            std::fs::rename(q.path(), &staged).map_err(MirrorError::io(&staged))?;
            q.mark_promoted();
            Checked {
                path: staged,
                staged: true,
                scan,
                git_oid: got.git_oid,
            }
        };
        checked.insert(item.sha256, c);
        done += item.size;
        progress(done, total);
    }
    let have = |d: &Digest| checked.get(d);

    // 8. The versions: every file against its listing and approval; OCI manifests against their
    // layers; [[trust]] signatures over the checked bytes.
    let trust = Trust::new(&cfg.trust)?;
    for v in &m.versions {
        let label = v.label();
        match v {
            Version::Hf {
                name,
                commit,
                listing,
                files,
                approval,
                ..
            } => {
                let repo = hf_repo(name).map_err(|e| bad(&label, e.to_string()))?;
                let l = &listings[listing];
                for f in files {
                    let item = format!("{label} file {}", f.path);
                    let c = have(&f.sha256).ok_or_else(|| {
                        bad(
                            &item,
                            "its bytes are neither in the bundle nor in this store",
                        )
                    })?;
                    let e = l
                        .get(&f.path)
                        .filter(|e| e.kind == EntryKind::File)
                        .ok_or_else(|| bad(&item, "not in the version's listing"))?;
                    if e.size != f.size {
                        return Err(bad(
                            &item,
                            format!("size {} differs from the listing's {}", f.size, e.size),
                        )
                        .into());
                    }
                    let ok = match &e.lfs {
                        Some(lfs) => lfs.sha256 == f.sha256,
                        None => c.git_oid == Some(e.oid),
                    };
                    if !ok {
                        return Err(bad(
                            &item,
                            "its bytes do not match the listing's sha256 / git blob id",
                        )
                        .into());
                    }
                }
                if let Some(id) = approval {
                    let rec = approval_for(&label, id, signing::Source::Hf, name, &commit.hex())?;
                    for f in files {
                        if rec
                            .file(&f.path)
                            .is_none_or(|p| p.sha256 != f.sha256 || p.size != f.size)
                        {
                            return Err(bad(
                                format!("{label} file {}", f.path),
                                format!("not pinned by approval {id}"),
                            )
                            .into());
                        }
                    }
                }
                if let Some(rule) = trust.rule_for(&repo) {
                    let paths: Vec<(String, Digest, PathBuf)> = files
                        .iter()
                        .filter_map(|f| {
                            have(&f.sha256).map(|c| (f.path.clone(), f.sha256, c.path.clone()))
                        })
                        .collect();
                    check_signature(&rule, &paths)
                        .map_err(|r| bad(&label, format!("[[trust]] {}: {r}", rule.pattern)))?;
                }
            }
            Version::Ollama {
                manifest,
                layers,
                approval,
                name,
                ..
            } => {
                ollama_name(name).map_err(|e| bad(&label, e.to_string()))?;
                let c = have(manifest).ok_or_else(|| {
                    bad(
                        &label,
                        "its manifest is neither in the bundle nor in this store",
                    )
                })?;
                let bytes = read_bounded(&c.path, MAX_OCI_MANIFEST as u64)?;
                let listed = crate::pipeline::manifest_layers(&bytes)
                    .map_err(|r| bad(format!("{label} manifest"), r))?;
                let want: HashSet<(Digest, u64)> =
                    listed.iter().map(|(d, l)| (*d, l.size)).collect();
                let got: HashSet<(Digest, u64)> =
                    layers.iter().map(|f| (f.sha256, f.size)).collect();
                if want != got {
                    return Err(
                        bad(&label, "its layers differ from what the manifest lists").into(),
                    );
                }
                for f in layers {
                    have(&f.sha256).ok_or_else(|| {
                        bad(
                            format!("{label} layer {}", f.sha256),
                            "its bytes are neither in the bundle nor in this store",
                        )
                    })?;
                }
                if let Some(id) = approval {
                    approval_for(
                        &label,
                        id,
                        signing::Source::Ollama,
                        name,
                        &manifest.to_string(),
                    )?;
                }
            }
        }
    }

    // 9. Commit. Only now is the index opened (and the server must be stopped).
    let store = Store::open_with(data_dir, &cfg.store).map_err(|e| {
        MirrorError::Config(format!(
            "opening the store at {} (stop `airlock serve` while importing): {e}",
            data_dir.display()
        ))
    })?;
    let (mut new_blobs, mut new_bytes) = (0, 0);
    for (d, c) in &checked {
        if c.staged {
            store.adopt(&c.path, d)?;
            new_blobs += 1;
            new_bytes += store.blob_size(d).unwrap_or(0);
        }
    }
    let approvals_dir = data_dir.join("approvals");
    std::fs::create_dir_all(&approvals_dir).map_err(MirrorError::io(&approvals_dir))?;
    for (_, s) in &approvals {
        s.write_to_dir(&approvals_dir).map_err(signing_err)?;
    }
    for s in &revocations {
        s.write_to_dir(&approvals_dir).map_err(signing_err)?;
    }
    let corrupt = |e: crate::names::NameError| MirrorError::Corrupt {
        key: "bundle version".into(),
        detail: e.to_string(),
    };
    for v in &m.versions {
        match v {
            Version::Hf {
                name,
                commit,
                refs,
                listing,
                files,
                ..
            } => {
                let repo = hf_repo(name).map_err(corrupt)?;
                store.put_manifest(&repo, *commit, &listings[listing])?;
                for f in files {
                    let path = RepoPath::parse(&f.path).map_err(corrupt)?;
                    let scan = checked[&f.sha256].scan.clone();
                    store.put_file(
                        &repo,
                        *commit,
                        &path,
                        &FileRecord {
                            digest: f.sha256,
                            size: f.size,
                            etag: f.etag.clone(),
                            scan,
                        },
                    )?;
                }
                for r in refs {
                    if let Ok(r) = RevisionName::parse(r) {
                        store.put_ref(&repo, &r, *commit)?;
                    }
                }
            }
            Version::Ollama {
                name,
                manifest,
                content_type,
                tags,
                layers,
                ..
            } => {
                let oname = ollama_name(name).map_err(corrupt)?;
                let size = store.blob_size(manifest).unwrap_or(0);
                for f in layers {
                    store.put_layer(
                        &oname,
                        &f.sha256,
                        &LayerRecord {
                            size: f.size,
                            media_type: f.path.clone(),
                            manifest: *manifest,
                        },
                    )?;
                    let scan = checked[&f.sha256].scan.clone();
                    store.put_blob_record(&FileRecord {
                        digest: f.sha256,
                        size: f.size,
                        etag: f.sha256.hex(),
                        scan,
                    })?;
                }
                store.put_name_manifest(
                    &oname,
                    manifest,
                    &ManifestRecord {
                        content_type: content_type.clone(),
                        size,
                    },
                )?;
                // The exporting mirror's upstream answered this manifest under this name, and it
                // was served there (the trusted exporter's signed manifest says so): record both,
                // so the name's scope covers it here as it did there, with no upstream to ask.
                store.put_confirmed(&oname, manifest)?;
                store.put_served(&oname, manifest, layers.iter().map(|f| f.sha256))?;
                for t in tags {
                    if let Ok(t) = Tag::parse(t) {
                        store.put_tag(&oname, &t, *manifest)?;
                    }
                }
            }
        }
    }
    let versions: Vec<String> = m.versions.iter().map(Version::label).collect();
    drop(store);
    let gov = Governance::open(
        cfg,
        std::sync::Arc::new(Store::open_with(data_dir, &cfg.store)?),
    )?;
    gov.audit(AuditEvent::Import {
        bundle,
        exporter: Some(exporter.clone()),
        versions: versions.clone(),
        items: new_blobs,
        bytes: new_bytes,
        refused: None,
    });
    Ok((exporter, versions, new_blobs, new_bytes))
}

/// The git blob id of a file of `size` bytes.
fn git_oid_of(path: &Path, size: u64) -> Result<Option<GitOid>, MirrorError> {
    let mut f = File::open(path).map_err(MirrorError::io(path))?;
    let mut h = verifier::Hasher::new(Some(size));
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = f.read(&mut buf).map_err(MirrorError::io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finish().git_oid)
}

/// Scans a file as an upstream fetch would be scanned. `Ok(Err(summary))` if it must be refused.
fn scan_file(
    path: &Path,
    len: u64,
    formats: Option<&'static [verifier::Format]>,
    options: &verifier::ScanOptions,
) -> Result<Result<String, String>, MirrorError> {
    let file = File::open(path).map_err(MirrorError::io(path))?;
    let report = verifier::scan_with(std::io::BufReader::new(file), len, options).map_err(|e| {
        MirrorError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e.to_string()),
        }
    })?;
    if let Some(allowed) = formats.filter(|f| !f.contains(&report.format)) {
        return Ok(Err(format!(
            "content is {:?}, not one of {allowed:?}",
            report.format
        )));
    }
    Ok(if report.is_clean() {
        Ok(report.summary())
    } else {
        Err(report.summary())
    })
}

/// Verifies a version's signature under a `[[trust]]` rule over the checked bytes (the same
/// verifiers the serving path's signature gate uses).
fn check_signature(
    rule: &crate::trust::Rule,
    files: &[(String, Digest, PathBuf)],
) -> Result<(), String> {
    let Some(requirement) = &rule.requirement else {
        return Ok(());
    };
    let find = |name: &str| files.iter().find(|(p, _, _)| p == name);
    let Some((_, _, sig_path)) = find(&rule.signature) else {
        return Err(format!("no signature ({}) in this version", rule.signature));
    };
    let sig = read_bounded(sig_path, 16 << 20).map_err(|e| e.to_string())?;
    let manifest_name = match requirement {
        Requirement::Pgp { manifest, .. } => Some(manifest.clone()),
        Requirement::ModelSigning { .. } => None,
    };
    let mut model = verifier::ModelFiles::new();
    for (path, digest, p) in files {
        if *path == rule.signature || Some(path) == manifest_name.as_ref() {
            continue;
        }
        model
            .add_with_sha256(path, p.clone(), *digest)
            .map_err(|e| format!("{path}: {e}"))?;
    }
    let now = std::time::SystemTime::now();
    let report = match requirement {
        Requirement::ModelSigning { policy } => {
            verifier::verify_model_signature(&model, &sig, policy, now)
        }
        Requirement::Pgp {
            keyring,
            options,
            manifest,
        } => {
            let Some((_, _, list_path)) = find(manifest) else {
                return Err(format!("no {manifest} in this version"));
            };
            let list = read_bounded(list_path, 16 << 20).map_err(|e| e.to_string())?;
            verifier::verify_pgp_manifest(&list, &sig, keyring, &model, options, now)
        }
    }
    .map_err(|e| e.to_string())?;
    match report.outcome {
        verifier::Outcome::Verified { .. } => Ok(()),
        verifier::Outcome::Failed { reason } => {
            Err(format!("{} does not verify: {reason}", rule.signature))
        }
    }
}
