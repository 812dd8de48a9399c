//! Migrations of the data directory from one format version to the next (`airlock migrate`).
//!
//! A step moves the directory from `from` to `from + 1`. Crash safety comes from two rules:
//! - before a step runs, `format.json` records `migrating_to`; only after the step has finished
//!   (and made its own writes durable) is the file replaced by the new version. A crash in
//!   between leaves `migrating_to` set, open refuses the directory, and `airlock migrate` runs
//!   the step again;
//! - so every step must be idempotent: safe to run again over its own partial result (write new
//!   files beside the old ones, rename into place, delete the old ones last).
//!
//! Today's format is the first one, so [`STEPS`] is empty: the only upgrade is stamping a
//! directory written before `format.json` existed, which open does by itself. The next layout
//! change (the store redesign) adds its step here and bumps [`super::CURRENT`].

use std::path::Path;

use super::{problem, read, write, FormatFile, FormatProblem, CURRENT};
use crate::error::MirrorError;

/// One migration step.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// The version it migrates from (to `from + 1`).
    pub from: u32,
    /// Cheap and safe to run at open (no large rewrite): `airlock serve` runs it by itself.
    /// Otherwise open refuses and names `airlock migrate`.
    pub automatic: bool,
    /// What it does, in a few words, for the refusal message and `airlock migrate`'s output.
    pub what: &'static str,
    /// The step itself. Idempotent (see the module docs). Runs with the data-dir lock held.
    pub run: fn(&Path) -> Result<(), MirrorError>,
}

/// Every step, in order of `from`.
pub const STEPS: &[Step] = &[];

/// What `airlock migrate` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrateReport {
    /// The version found.
    pub from: u32,
    /// The version now.
    pub to: u32,
    /// The steps run, as "`from`→`to`: what".
    pub steps: Vec<String>,
}

pub(crate) fn pending(steps: &[Step], from: u32, to: u32) -> Vec<Step> {
    steps
        .iter()
        .filter(|s| s.from >= from && s.from < to)
        .copied()
        .collect()
}

/// Runs `steps` (consecutive, starting at `at`), recording each in `format.json` around it.
pub(crate) fn run_steps(data_dir: &Path, at: u32, steps: &[Step]) -> Result<u32, MirrorError> {
    let mut at = at;
    for step in steps {
        debug_assert_eq!(step.from, at, "steps are consecutive");
        let mut marker = FormatFile::at(at);
        marker.migrating_to = Some(at + 1);
        write(data_dir, &marker)?;
        tracing::info!(
            from = at,
            to = at + 1,
            what = step.what,
            "migrating the data directory"
        );
        (step.run)(data_dir)?;
        at += 1;
        write(data_dir, &FormatFile::at(at))?;
    }
    Ok(at)
}

/// Brings the data directory to the current format, finishing an interrupted migration first.
/// Takes the data-dir lock, so the server must be stopped.
pub fn migrate(data_dir: &Path) -> Result<MigrateReport, MirrorError> {
    migrate_with(data_dir, STEPS, CURRENT)
}

pub(crate) fn migrate_with(
    data_dir: &Path,
    steps: &[Step],
    current: u32,
) -> Result<MigrateReport, MirrorError> {
    if !data_dir.is_dir() {
        return Err(MirrorError::io(data_dir)(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no such data directory",
        )));
    }
    let _lock = crate::store::lock_data_dir(data_dir)?;
    let Some(found) = read(data_dir)? else {
        write(data_dir, &FormatFile::at(current))?;
        return Ok(MigrateReport {
            from: current,
            to: current,
            steps: Vec::new(),
        });
    };
    if found.format > current {
        return Err(problem(
            data_dir,
            FormatProblem::Newer {
                found: found.format,
                supported: current,
            },
        ));
    }
    // An interrupted step is simply run again: steps are idempotent.
    let todo = pending(steps, found.format, current);
    let to = run_steps(data_dir, found.format, &todo)?;
    if to == found.format {
        // Nothing to run: stamp a directory that had no file yet, and clear nothing else.
        write(data_dir, &FormatFile::at(to))?;
    }
    Ok(MigrateReport {
        from: found.format,
        to,
        steps: todo
            .iter()
            .map(|s| format!("{}→{}: {}", s.from, s.from + 1, s.what))
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::check_with;
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A made-up version-2 layout: `index` renamed to `index2` (idempotent: a rerun after the
    /// rename finds nothing to do).
    fn rename_index(d: &Path) -> Result<(), MirrorError> {
        let (old, new) = (d.join("index"), d.join("index2"));
        if old.exists() {
            std::fs::rename(&old, &new).map_err(MirrorError::io(&old))?;
        }
        Ok(())
    }

    static CRASH: AtomicBool = AtomicBool::new(true);
    fn crash_once(d: &Path) -> Result<(), MirrorError> {
        if CRASH.swap(false, Ordering::SeqCst) {
            std::fs::write(d.join("half-done"), b"x").map_err(MirrorError::io(d))?;
            return Err(MirrorError::Task("killed mid-step".into()));
        }
        std::fs::remove_file(d.join("half-done")).ok();
        rename_index(d)
    }

    const MANUAL: &[Step] = &[Step {
        from: 1,
        automatic: false,
        what: "rename index",
        run: rename_index,
    }];

    fn v1_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("index")).unwrap();
        d
    }

    #[test]
    fn open_refuses_a_manual_step_and_names_the_command() {
        let d = v1_dir();
        let e = check_with(d.path(), MANUAL, 2).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("airlock migrate --data-dir"), "{msg}");
        assert!(msg.contains("rename index"), "{msg}");
        assert!(d.path().join("index").exists(), "open changed nothing");
        assert!(!d.path().join(super::super::FILE).exists());
    }

    #[test]
    fn migrate_runs_the_step_then_open_accepts() {
        let d = v1_dir();
        let r = migrate_with(d.path(), MANUAL, 2).unwrap();
        assert_eq!((r.from, r.to, r.steps.len()), (1, 2, 1));
        assert!(d.path().join("index2").exists());
        check_with(d.path(), MANUAL, 2).unwrap();
        assert_eq!(read(d.path()).unwrap().unwrap().format, 2);
    }

    #[test]
    fn automatic_steps_run_at_open() {
        let d = v1_dir();
        let auto = [Step {
            automatic: true,
            ..MANUAL[0]
        }];
        check_with(d.path(), &auto, 2).unwrap();
        assert!(d.path().join("index2").exists());
        assert_eq!(read(d.path()).unwrap().unwrap().format, 2);
    }

    #[test]
    fn a_crash_mid_step_is_refused_at_open_and_finished_by_a_rerun() {
        let d = v1_dir();
        let steps = [Step {
            from: 1,
            automatic: false,
            what: "crashes once",
            run: crash_once,
        }];
        assert!(migrate_with(d.path(), &steps, 2).is_err());
        let f = read(d.path()).unwrap().unwrap();
        assert_eq!((f.format, f.migrating_to), (1, Some(2)));
        let msg = check_with(d.path(), &steps, 2).unwrap_err().to_string();
        assert!(msg.contains("interrupted"), "{msg}");
        let r = migrate_with(d.path(), &steps, 2).unwrap();
        assert_eq!(r.to, 2);
        assert!(d.path().join("index2").exists() && !d.path().join("half-done").exists());
        check_with(d.path(), &steps, 2).unwrap();
    }

    #[test]
    fn migrate_refuses_a_newer_directory() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), &FormatFile::at(CURRENT + 3)).unwrap();
        assert!(migrate(d.path()).unwrap_err().to_string().contains("newer"));
    }
}
