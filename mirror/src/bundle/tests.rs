//! Export and import against real stores in temp dirs: interrupted runs resume, a second import
//! changes nothing, a truncated part is named and leaves the store as it was.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::sync::Arc;

use signing::{sign, ApprovalRecord, KeyPair, PinnedFile, Source, Timestamp};
use verifier::Digest;

use super::{export, import, Imported, Selection};
use crate::config::Config;
use crate::governance::Governance;
use crate::manifest::{Entry, EntryKind, Lfs, Manifest};
use crate::names::{RepoPath, Revision};
use crate::store::{FileRecord, Store};

const MIB: u64 = 1 << 20;

fn config(dir: &Path, gov_pub: &Path) -> Config {
    let mut cfg = Config::default();
    cfg.data_dir = dir.join("data");
    cfg.governance.keys = vec![gov_pub.to_owned()];
    cfg.offline = true;
    cfg
}

/// A connected site holding one approved HF version: a git file and a 3 MiB LFS file.
fn connected(dir: &Path) -> (Config, Arc<Store>, Governance, Vec<u8>) {
    let key = KeyPair::from_seed(&[7; 32]);
    std::fs::create_dir_all(dir).unwrap();
    let gov_pub = dir.join("gov.pub");
    key.public().write(&gov_pub).unwrap();
    let cfg = config(dir, &gov_pub);
    let store = Arc::new(Store::open(&cfg.data_dir).unwrap());
    let repo = super::hf_repo("acme/tiny").unwrap();
    let commit = Revision::parse(&"ab".repeat(20)).unwrap();
    let small = b"{\"model_type\": \"tiny\"}\n".to_vec();
    let big: Vec<u8> = b"0123456789abcdef\n"
        .iter()
        .copied()
        .cycle()
        .take((3 * MIB + 5) as usize)
        .collect();
    let git_oid = {
        let mut h = verifier::Hasher::new(Some(small.len() as u64));
        h.update(&small);
        h.finish().git_oid.unwrap()
    };
    let mut entries = Vec::new();
    let mut pins = Vec::new();
    for (path, bytes, lfs) in [("config.json", &small, false), ("weights.txt", &big, true)] {
        let digest = store.write_blob(bytes).unwrap();
        let size = bytes.len() as u64;
        entries.push(Entry {
            path: RepoPath::parse(path).unwrap(),
            kind: EntryKind::File,
            oid: git_oid,
            size,
            lfs: lfs.then_some(Lfs {
                sha256: digest,
                size,
                pointer_size: 130,
            }),
        });
        let rp = RepoPath::parse(path).unwrap();
        let rec = FileRecord {
            digest,
            size,
            etag: digest.hex(),
            scan: "clean".into(),
        };
        store.put_file(&repo, commit, &rp, &rec).unwrap();
        pins.push(PinnedFile {
            path: path.into(),
            sha256: digest,
            size,
        });
    }
    store
        .put_manifest(&repo, commit, &Manifest::new(entries))
        .unwrap();
    let record = ApprovalRecord {
        source: Source::Hf,
        name: "acme/tiny".into(),
        revision: commit.hex(),
        revision_name: Some("main".into()),
        files: pins,
        approved_by: "tests".into(),
        approved_at: Timestamp::from_unix(1_700_000_000).unwrap(),
        expires_at: None,
        reason: "unit test".into(),
        license: None,
        license_override: false,
    };
    let signed = sign(record, &key).unwrap();
    let approvals = cfg.data_dir.join("approvals");
    std::fs::create_dir_all(&approvals).unwrap();
    signed.write_to_dir(&approvals).unwrap();
    let gov = Governance::open(&cfg, store.clone()).unwrap();
    (cfg, store, gov, big)
}

fn offline(dir: &Path, connected: &Config) -> Config {
    let mut cfg = config(dir, &connected.governance.keys[0]);
    cfg.airgap.trusted_exporters = vec![connected.data_dir.join("mirror.pub")];
    cfg
}

fn blobs(data: &Path) -> Vec<String> {
    let mut out: Vec<String> = walk(&data.join("blobs"));
    out.sort();
    out
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path().display().to_string());
        }
    }
    out
}

#[test]
fn an_interrupted_export_keeps_its_checked_parts_and_an_interrupted_import_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, store, gov, big) = connected(&tmp.path().join("c"));
    let out = tmp.path().join("bundle");
    // Interrupted after two parts: the progress callback stands in for a pulled plug.
    let crash = catch_unwind(AssertUnwindSafe(|| {
        export(
            &store,
            &gov,
            &Selection::AllApproved,
            &out,
            MIB,
            None,
            &|done, _| assert!(done <= 2 * MIB, "interrupted"),
        )
    }));
    assert!(crash.is_err());
    let done = export(
        &store,
        &gov,
        &Selection::AllApproved,
        &out,
        MIB,
        None,
        &|_, _| {},
    )
    .unwrap();
    assert_eq!(done.parts_kept, 2, "{done:?}");
    assert!(done.parts_written >= 2, "{done:?}");

    let off = offline(&tmp.path().join("o"), &cfg);
    let crash = catch_unwind(AssertUnwindSafe(|| {
        import(&off, &out, &|done, _| {
            assert!(done < 3 * MIB, "interrupted")
        })
    }));
    assert!(crash.is_err());
    assert!(
        blobs(&off.data_dir).is_empty(),
        "nothing visible before the whole bundle passed"
    );
    let staged = walk(&off.data_dir.join("import"));
    assert!(
        !staged.is_empty(),
        "checked blobs wait in staging for the re-run"
    );
    match import(&off, &out, &|_, _| {}).unwrap() {
        Imported::Done { new_blobs, .. } => assert_eq!(new_blobs, 2),
        r => panic!("{r:?}"),
    }
    assert!(blobs(&off.data_dir)
        .iter()
        .any(|b| b.ends_with(&Digest::of(&big).hex())));
    assert!(!off.data_dir.join("import").exists(), "staging is removed");
    // Twice: nothing new.
    let before = blobs(&off.data_dir);
    match import(&off, &out, &|_, _| {}).unwrap() {
        Imported::Done { new_blobs, .. } => assert_eq!(new_blobs, 0),
        r => panic!("{r:?}"),
    }
    assert_eq!(blobs(&off.data_dir), before);
}

#[test]
fn a_truncated_part_is_named_and_the_store_is_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, store, gov, _) = connected(&tmp.path().join("c"));
    let out = tmp.path().join("bundle");
    export(
        &store,
        &gov,
        &Selection::AllApproved,
        &out,
        MIB,
        None,
        &|_, _| {},
    )
    .unwrap();
    let part = out.join("part-0001");
    let len = std::fs::metadata(&part).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&part)
        .unwrap()
        .set_len(len - 1)
        .unwrap();
    let off = offline(&tmp.path().join("o"), &cfg);
    match import(&off, &out, &|_, _| {}).unwrap() {
        Imported::Refused { item, reason } => {
            assert_eq!(item, "part-0001");
            assert!(reason.contains("truncated"), "{reason}");
        }
        r => panic!("{r:?}"),
    }
    assert!(blobs(&off.data_dir).is_empty());
    assert!(
        !off.data_dir.join("index").exists(),
        "the index is not even opened"
    );
}
