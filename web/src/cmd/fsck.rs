//! `airlock fsck`: checks that every indexed blob exists and hashes right, and lists what no
//! index record reaches; `--repair` removes only what can no longer be vouched for, so the next
//! request fetches and verifies it again.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `airlock fsck`.
#[derive(clap::Args, Debug)]
pub struct FsckArgs {
    /// TOML config file (for `data_dir`).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the config and AIRLOCK_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Remove corrupt blobs, index records whose blob is missing, and crash leftovers. Nothing is
    /// added or trusted anew: the files concerned are fetched and verified again on demand.
    #[arg(long)]
    pub repair: bool,
}

/// Runs the check. Exit 0: consistent (or every problem repaired); 1: problems found; 2: error.
/// The server must be stopped (the data directory is locked while it runs).
pub fn run(args: FsckArgs) -> anyhow::Result<ExitCode> {
    let cfg = mirror::Config::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    let data_dir = args.data_dir.unwrap_or(cfg.data_dir);
    let store = mirror::Store::open_with(&data_dir, &cfg.store)
        .with_context(|| format!("opening {}", data_dir.display()))?;
    // indicatif draws only on a terminal, so logs and tests see the summary alone.
    let bar = indicatif::ProgressBar::new_spinner();
    if let Ok(style) = indicatif::ProgressStyle::with_template("{spinner} hashing blobs: {bytes}") {
        bar.set_style(style);
    }
    let report = store.fsck(args.repair, |n| bar.set_position(n))?;
    bar.finish_and_clear();
    for p in &report.problems {
        println!("{}{p}", if report.repaired { "repaired: " } else { "" });
    }
    for d in &report.orphans {
        println!("orphan: blob {d} is verified but no index record reaches it (`airlock reindex` binds it if a listing names it)");
    }
    println!(
        "{}: {} blobs ({} bytes) hashed, {} index records checked, {} problems{}, {} orphans",
        data_dir.display(),
        report.blobs,
        report.bytes,
        report.records,
        report.problems.len(),
        if report.repaired && !report.problems.is_empty() {
            " repaired"
        } else {
            ""
        },
        report.orphans.len()
    );
    Ok(if report.problems.is_empty() || report.repaired {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
