//! The file set a model signature is checked against.
//!
//! Two shapes: a real directory (walked without following symlinks), or a list of
//! (model-relative name, file on disk) pairs, which is how the mirror describes a quarantined
//! snapshot whose bytes are stored content-addressed. A single-file model is the name `"."`.

use crate::{Digest, VerifyError};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Files beyond this many are refused: a model with more is not something we mirror, and the
/// bound keeps a hostile tree from exhausting memory.
const MAX_FILES: usize = 100_000;
/// Directory nesting beyond this is refused for the same reason.
const MAX_DEPTH: usize = 64;

/// The files of one model, by model-relative POSIX name.
#[derive(Debug, Clone, Default)]
pub struct ModelFiles {
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// A regular file, and its sha256 if the caller already knows it (the quarantine computed
    /// it while the bytes streamed in), which saves re-reading large files.
    File {
        path: PathBuf,
        sha256: Option<Digest>,
    },
    /// A symlink, device, socket or fifo found while walking: never acceptable in a model, but
    /// reported as a verification failure naming the file rather than as an I/O error.
    NotRegular,
}

impl ModelFiles {
    /// An empty set, to be filled with [`ModelFiles::add`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Walks `dir` recursively. Symlinks are not followed; they (and special files) are
    /// recorded so that verification fails naming them.
    pub fn from_dir(dir: &Path) -> Result<Self, VerifyError> {
        let mut files = ModelFiles::new();
        walk(dir, "", 0, &mut files)?;
        Ok(files)
    }

    /// A single-file model: the file is the resource named `"."`.
    pub fn from_file(path: &Path) -> Result<Self, VerifyError> {
        let meta = std::fs::symlink_metadata(path).map_err(|source| VerifyError::ReadPath {
            path: path.to_path_buf(),
            source,
        })?;
        let mut files = ModelFiles::new();
        let entry = if meta.file_type().is_file() {
            Entry::File {
                path: path.to_path_buf(),
                sha256: None,
            }
        } else {
            Entry::NotRegular
        };
        files.entries.insert(".".to_string(), entry);
        Ok(files)
    }

    /// Adds one file under a model-relative POSIX name. The name must be safe (no absolute
    /// path, `..`, `.` or empty component, backslash or NUL) and not yet present.
    pub fn add(&mut self, name: &str, path: PathBuf) -> Result<(), VerifyError> {
        self.insert(name, Entry::File { path, sha256: None })
    }

    /// Like [`ModelFiles::add`], with the file's sha256 already known (computed by the caller
    /// while the bytes were written). It is trusted for `sha256` file digests instead of
    /// re-reading the file.
    pub fn add_with_sha256(
        &mut self,
        name: &str,
        path: PathBuf,
        sha256: Digest,
    ) -> Result<(), VerifyError> {
        self.insert(
            name,
            Entry::File {
                path,
                sha256: Some(sha256),
            },
        )
    }

    /// Drops a name from the set (the signature file itself, when it lives in the model
    /// directory). Returns whether it was present.
    pub fn remove(&mut self, name: &str) -> bool {
        self.entries.remove(name).is_some()
    }

    /// The names in the set, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether this is a single-file model (the one entry is `"."`).
    pub(crate) fn is_single_file(&self) -> bool {
        self.entries.len() == 1 && self.entries.contains_key(".")
    }

    fn insert(&mut self, name: &str, entry: Entry) -> Result<(), VerifyError> {
        if name != "." {
            if let Some(reason) = unsafe_name(name) {
                return Err(VerifyError::BadModelPath {
                    name: name.to_string(),
                    reason,
                });
            }
        }
        if self.entries.len() >= MAX_FILES {
            return Err(VerifyError::TooLarge {
                what: "model file count",
                limit: MAX_FILES as u64,
            });
        }
        if self.entries.contains_key(name) {
            return Err(VerifyError::BadModelPath {
                name: name.to_string(),
                reason: "listed twice",
            });
        }
        self.entries.insert(name.to_string(), entry);
        Ok(())
    }
}

/// Why `name` is not a safe model-relative POSIX path, or `None` if it is. Shared by the file
/// set and by the check of signed resource names, so both apply the same rule.
pub(crate) fn unsafe_name(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("empty");
    }
    if name.starts_with('/') {
        return Some("absolute path");
    }
    // A backslash is a separator on Windows and in some unpackers; refusing it outright closes
    // `..\\x` and `C:\\x` tricks without having to guess the consumer's platform.
    if name.contains('\\') {
        return Some("backslash");
    }
    if name.contains('\0') {
        return Some("NUL byte");
    }
    for component in name.split('/') {
        match component {
            "" => return Some("empty path component"),
            "." => return Some("'.' component"),
            ".." => return Some("'..' component"),
            _ => {}
        }
    }
    None
}

fn walk(dir: &Path, prefix: &str, depth: usize, out: &mut ModelFiles) -> Result<(), VerifyError> {
    if depth > MAX_DEPTH {
        return Err(VerifyError::TooLarge {
            what: "directory depth",
            limit: MAX_DEPTH as u64,
        });
    }
    let read_err = |source| VerifyError::ReadPath {
        path: dir.to_path_buf(),
        source,
    };
    let mut children = Vec::new();
    for item in std::fs::read_dir(dir).map_err(read_err)? {
        children.push(item.map_err(read_err)?);
    }
    // Sorted so that errors and reports are deterministic.
    children.sort_by_key(|c| c.file_name());
    for child in children {
        let os_name = child.file_name();
        let Some(file_name) = os_name.to_str() else {
            return Err(VerifyError::BadModelPath {
                name: os_name.to_string_lossy().into_owned(),
                reason: "not UTF-8",
            });
        };
        let name = if prefix.is_empty() {
            file_name.to_string()
        } else {
            format!("{prefix}/{file_name}")
        };
        let path = child.path();
        // symlink_metadata: a symlink is judged as itself, never as its target.
        let meta = std::fs::symlink_metadata(&path).map_err(|source| VerifyError::ReadPath {
            path: path.clone(),
            source,
        })?;
        let kind = meta.file_type();
        if kind.is_dir() {
            walk(&path, &name, depth + 1, out)?;
        } else if kind.is_file() {
            out.insert(&name, Entry::File { path, sha256: None })?;
        } else {
            out.insert(&name, Entry::NotRegular)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_escape_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "a\\b",
            "..\\x",
            "x/",
        ] {
            assert!(unsafe_name(bad).is_some(), "{bad:?} accepted");
        }
        for good in [
            "config.json",
            "a/b",
            "a-b",
            ".gitattributes",
            "dir/.hidden",
            "a..b",
        ] {
            assert_eq!(unsafe_name(good), None, "{good:?} refused");
        }
    }

    #[test]
    fn duplicate_and_bad_names_are_errors() {
        let mut files = ModelFiles::new();
        assert!(files.add("a", PathBuf::from("/x")).is_ok());
        assert!(files.add("a", PathBuf::from("/y")).is_err());
        assert!(files.add("../a", PathBuf::from("/y")).is_err());
    }
}
