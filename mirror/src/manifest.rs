//! The file listing of one commit as the upstream declared it: the expected size, git oid and LFS
//! sha256 of every file. Every fetched file is checked against its entry before promotion.

use crate::names::RepoPath;
use verifier::{Digest, GitOid};

/// One entry of a commit's tree.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// Repo-relative path.
    pub path: RepoPath,
    /// File or directory.
    #[serde(rename = "type")]
    pub kind: EntryKind,
    /// Git object id (blob sha1 for files, tree sha1 for directories).
    pub oid: GitOid,
    /// Size in bytes (0 for directories; the real size for LFS files).
    pub size: u64,
    /// LFS pointer data, for files stored in LFS.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub lfs: Option<Lfs>,
}

/// File or directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A file.
    File,
    /// A directory.
    Directory,
}

/// What the LFS pointer of a file declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lfs {
    /// sha256 of the content.
    pub sha256: Digest,
    /// Size of the content.
    pub size: u64,
    /// Size of the pointer file in git.
    pub pointer_size: u64,
}

impl Entry {
    /// The ETag clients expect: sha256 for LFS files, the git blob id otherwise.
    pub fn etag(&self) -> String {
        match &self.lfs {
            Some(lfs) => lfs.sha256.hex(),
            None => self.oid.hex(),
        }
    }
}

/// All entries of one commit, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    /// Entries sorted by path.
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// Builds a manifest, sorting and de-duplicating by path (an upstream listing a path twice is
    /// treated as listing it once, keeping the first).
    pub fn new(mut entries: Vec<Entry>) -> Manifest {
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        entries.dedup_by(|b, a| a.path == b.path);
        Manifest { entries }
    }
    /// The entry at `path`.
    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries
            .binary_search_by(|e| e.path.as_str().cmp(path))
            .ok()
            .and_then(|i| self.entries.get(i))
    }
    /// Files only.
    pub fn files(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| e.kind == EntryKind::File)
    }
    /// Entries under `dir` (`None` = the root): all descendants if `recursive`, else direct children.
    /// Returns `None` if `dir` is not a directory of this commit.
    pub fn list(&self, dir: Option<&str>, recursive: bool) -> Option<Vec<&Entry>> {
        let prefix = match dir {
            None => String::new(),
            Some(d) => {
                match self.get(d) {
                    Some(e) if e.kind == EntryKind::Directory => {}
                    _ => return None,
                }
                format!("{d}/")
            }
        };
        Some(
            self.entries
                .iter()
                .filter(|e| {
                    e.path
                        .as_str()
                        .strip_prefix(prefix.as_str())
                        .is_some_and(|rest| recursive || !rest.contains('/'))
                })
                .collect(),
        )
    }
}
