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
        self.list_page(dir, recursive, 0, usize::MAX)
            .map(|(page, _)| page)
    }

    /// At most `n` entries of [`Manifest::list`] from the `start`-th, and whether more follow.
    /// Entries are sorted by path, so a directory's descendants are one contiguous run found by
    /// binary search: a recursive page costs O(log files + n), and paging through a whole
    /// snapshot O(files) rather than O(files²/n).
    pub fn list_page(
        &self,
        dir: Option<&str>,
        recursive: bool,
        start: usize,
        n: usize,
    ) -> Option<(Vec<&Entry>, bool)> {
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
        let sub = self.subtree(&prefix);
        if recursive {
            let page: Vec<&Entry> = sub.iter().skip(start).take(n).collect();
            return Some((page, start.saturating_add(n) < sub.len()));
        }
        let mut children = sub
            .iter()
            .filter(|e| !e.path.as_str()[prefix.len()..].contains('/'))
            .skip(start);
        let page: Vec<&Entry> = children.by_ref().take(n).collect();
        Some((page, children.next().is_some()))
    }

    /// The entries whose path starts with `prefix`: contiguous, because entries are sorted.
    fn subtree(&self, prefix: &str) -> &[Entry] {
        let lo = self.entries.partition_point(|e| e.path.as_str() < prefix);
        let rest = &self.entries[lo..];
        let len = rest.partition_point(|e| e.path.as_str().starts_with(prefix));
        &rest[..len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: RepoPath::parse(path).expect("valid path"),
            kind,
            size: 1,
            oid: GitOid::from_hex("0123456789abcdef0123456789abcdef01234567").expect("40 hex"),
            lfs: None,
        }
    }

    #[test]
    fn pages_are_the_filtered_listing_in_order() {
        let m = Manifest::new(vec![
            entry("a", EntryKind::Directory),
            entry("a/b", EntryKind::File),
            entry("a/c", EntryKind::Directory),
            entry("a/c/d", EntryKind::File),
            entry("a-x", EntryKind::File),
            entry("b", EntryKind::File),
        ]);
        let paths = |v: Vec<&Entry>| {
            v.iter()
                .map(|e| e.path.as_str().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            paths(m.list(Some("a"), true).unwrap()),
            ["a/b", "a/c", "a/c/d"]
        );
        assert_eq!(paths(m.list(Some("a"), false).unwrap()), ["a/b", "a/c"]);
        assert_eq!(paths(m.list(None, false).unwrap()), ["a", "a-x", "b"]);
        let (p, more) = m.list_page(None, true, 1, 2).unwrap();
        // Sorted by path bytes: '-' sorts before '/'.
        assert_eq!(
            (paths(p), more),
            (vec!["a-x".to_owned(), "a/b".to_owned()], true)
        );
        let (p, more) = m.list_page(None, true, 4, 2).unwrap();
        assert_eq!(
            (paths(p), more),
            (vec!["a/c/d".to_owned(), "b".to_owned()], false)
        );
        let (p, more) = m.list_page(None, false, 2, 5).unwrap();
        assert_eq!((paths(p), more), (vec!["b".to_owned()], false));
        assert!(m
            .list_page(None, true, usize::MAX, usize::MAX)
            .unwrap()
            .0
            .is_empty());
        assert!(
            m.list(Some("b"), true).is_none(),
            "a file is not a directory"
        );
    }
}
