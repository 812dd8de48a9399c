//! The data directory's format version: `format.json` at its root, read before anything opens the
//! index, so a build never silently misreads a directory laid out by another version.
//!
//! - No `format.json` in a directory that holds data is version 1 (the layout before the file
//!   existed); a directory with no data gets [`CURRENT`].
//! - An older version is brought up to [`CURRENT`] by the steps in [`migrate`]. Steps marked
//!   automatic run at open; any other step makes open refuse with a message naming
//!   `airlock migrate`, which runs them with the server stopped.
//! - A newer version, an unreadable file, or a migration a crash interrupted is refused.
//!
//! The file is only ever replaced whole (temporary file, fsync, rename, fsync of the directory),
//! so after a crash it holds either the old or the new version.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::MirrorError;

pub mod migrate;

/// The format this build reads and writes.
pub const CURRENT: u32 = 1;

/// The version file's name, at the root of the data directory.
pub const FILE: &str = "format.json";

/// Entries whose presence shows that a directory without `format.json` was written by a version-1
/// Airlock (every one of them existed before the version file did).
const V1_ENTRIES: &[&str] = &[
    "index",
    "blobs",
    "manifests",
    "audit.log",
    "approvals",
    "mirror.key",
];

/// Why a data directory cannot be used as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatProblem {
    /// Written by a newer Airlock: this build would misread it.
    #[error(
        "data format version {found} was written by a newer airlock; this airlock ({}) reads \
         up to version {supported}. Run the newer airlock (a data directory is never downgraded)",
        env!("CARGO_PKG_VERSION")
    )]
    Newer {
        /// The directory's version.
        found: u32,
        /// [`CURRENT`].
        supported: u32,
    },
    /// Older, and the steps up to [`CURRENT`] are not run at open.
    #[error(
        "data format version {found} needs migrating to version {supported} ({steps}): stop \
         `airlock serve`, back the directory up, then run `airlock migrate --data-dir {dir}`"
    )]
    NeedsMigration {
        /// The directory's version.
        found: u32,
        /// [`CURRENT`].
        supported: u32,
        /// What the pending steps do.
        steps: String,
        /// The directory, as the command line should name it.
        dir: String,
    },
    /// A migration started and did not finish (a crash or a kill): its steps are written to be
    /// run again, and `airlock migrate` does.
    #[error(
        "a migration from data format version {from} to {to} was interrupted: run `airlock \
         migrate --data-dir {dir}` to finish it"
    )]
    Interrupted {
        /// The version the directory is at.
        from: u32,
        /// The version the interrupted step was moving it to.
        to: u32,
        /// The directory.
        dir: String,
    },
    /// `format.json` is not what this module writes.
    #[error("{FILE} is unreadable ({detail}); restore it from a backup, do not delete it")]
    Unreadable {
        /// The parse error.
        detail: String,
    },
}

/// The content of `format.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FormatFile {
    /// The version the directory's content is laid out in.
    pub format: u32,
    /// Set while a step moving the directory to this version runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub migrating_to: Option<u32>,
    /// Which build wrote the file (for the operator; never read back as a decision).
    #[serde(default)]
    pub written_by: String,
}

impl FormatFile {
    pub(crate) fn at(format: u32) -> FormatFile {
        FormatFile {
            format,
            migrating_to: None,
            written_by: format!("airlock {}", env!("CARGO_PKG_VERSION")),
        }
    }
}

fn problem(data_dir: &Path, problem: FormatProblem) -> MirrorError {
    MirrorError::DataFormat {
        path: data_dir.to_owned(),
        problem,
    }
}

/// Reads the directory's version: `None` for a directory with no data at all.
pub(crate) fn read(data_dir: &Path) -> Result<Option<FormatFile>, MirrorError> {
    let path = data_dir.join(FILE);
    match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            problem(
                data_dir,
                FormatProblem::Unreadable {
                    detail: e.to_string(),
                },
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let has_data = V1_ENTRIES.iter().any(|e| data_dir.join(e).exists());
            Ok(has_data.then(|| FormatFile {
                format: 1,
                migrating_to: None,
                written_by: String::new(),
            }))
        }
        Err(e) => Err(MirrorError::io(path)(e)),
    }
}

/// Replaces `format.json` whole and durably.
pub(crate) fn write(data_dir: &Path, file: &FormatFile) -> Result<(), MirrorError> {
    use std::io::Write;
    let path = data_dir.join(FILE);
    let tmp: PathBuf = data_dir.join(format!("{FILE}.{}.tmp", std::process::id()));
    // Serialising a struct of integers and a string cannot fail.
    let mut bytes = serde_json::to_vec_pretty(file).unwrap_or_default();
    bytes.push(b'\n');
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(&bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(MirrorError::io(path)(e));
    }
    std::fs::File::open(data_dir)
        .and_then(|d| d.sync_all())
        .map_err(MirrorError::io(data_dir))
}

/// Checks the directory before the store opens its index, running the automatic steps and
/// stamping a directory that has no `format.json` yet. The caller holds the data-dir lock.
pub(crate) fn check(data_dir: &Path) -> Result<(), MirrorError> {
    check_with(data_dir, migrate::STEPS, CURRENT)
}

pub(crate) fn check_with(
    data_dir: &Path,
    steps: &[migrate::Step],
    current: u32,
) -> Result<(), MirrorError> {
    let dir = data_dir.display().to_string();
    let Some(found) = read(data_dir)? else {
        return write(data_dir, &FormatFile::at(current));
    };
    if let Some(to) = found.migrating_to {
        return Err(problem(
            data_dir,
            FormatProblem::Interrupted {
                from: found.format,
                to,
                dir,
            },
        ));
    }
    if found.format > current {
        return Err(problem(
            data_dir,
            FormatProblem::Newer {
                found: found.format,
                supported: current,
            },
        ));
    }
    let pending = migrate::pending(steps, found.format, current);
    if pending.iter().all(|s| s.automatic) {
        // Covers the unversioned version-1 directory too: no steps, only the stamp.
        migrate::run_steps(data_dir, found.format, &pending)?;
        if !data_dir.join(FILE).exists() {
            write(data_dir, &FormatFile::at(current))?;
        }
        return Ok(());
    }
    Err(problem(
        data_dir,
        FormatProblem::NeedsMigration {
            found: found.format,
            supported: current,
            steps: pending
                .iter()
                .map(|s| format!("{}→{}: {}", s.from, s.from + 1, s.what))
                .collect::<Vec<_>>()
                .join("; "),
            dir,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem_of(r: Result<(), MirrorError>) -> FormatProblem {
        match r {
            Err(MirrorError::DataFormat { problem, .. }) => problem,
            other => panic!("expected a format problem, got {other:?}"),
        }
    }

    #[test]
    fn an_empty_directory_is_stamped_current() {
        let d = tempfile::tempdir().unwrap();
        check(d.path()).unwrap();
        assert_eq!(read(d.path()).unwrap().unwrap().format, CURRENT);
    }

    #[test]
    fn an_unversioned_directory_with_data_is_version_1() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("index")).unwrap();
        assert_eq!(read(d.path()).unwrap().unwrap().format, 1);
        check(d.path()).unwrap();
        let f = read(d.path()).unwrap().unwrap();
        assert_eq!((f.format, f.migrating_to), (1, None));
    }

    #[test]
    fn a_newer_directory_is_refused_and_left_alone() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), &FormatFile::at(CURRENT + 1)).unwrap();
        let before = std::fs::read(d.path().join(FILE)).unwrap();
        let p = problem_of(check(d.path()));
        assert!(matches!(p, FormatProblem::Newer { found, .. } if found == CURRENT + 1));
        assert!(p.to_string().contains("newer airlock"), "{p}");
        assert_eq!(std::fs::read(d.path().join(FILE)).unwrap(), before);
    }

    #[test]
    fn garbage_in_the_version_file_is_refused_not_guessed() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join(FILE), b"{\"format\": \"two\"}").unwrap();
        assert!(matches!(
            problem_of(check(d.path())),
            FormatProblem::Unreadable { .. }
        ));
    }

    #[test]
    fn an_interrupted_migration_is_refused_until_migrate_finishes_it() {
        let d = tempfile::tempdir().unwrap();
        let mut f = FormatFile::at(1);
        f.migrating_to = Some(2);
        write(d.path(), &f).unwrap();
        let p = problem_of(check(d.path()));
        assert!(p.to_string().contains("airlock migrate"), "{p}");
    }
}
