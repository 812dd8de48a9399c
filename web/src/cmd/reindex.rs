//! `airlock reindex`: rebuilds the sled index from the files that are the sources of truth.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `airlock reindex`.
#[derive(clap::Args, Debug)]
pub struct ReindexArgs {
    /// TOML config file (for `data_dir`).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the config and AIRLOCK_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Rebuilds the index. The server must be stopped (the index is locked while it runs).
pub fn run(args: ReindexArgs) -> anyhow::Result<ExitCode> {
    let cfg = mirror::Config::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    let data_dir = args.data_dir.unwrap_or(cfg.data_dir);
    let store = mirror::Store::open_with(&data_dir, &cfg.store).with_context(|| {
        format!(
            "opening {} (is `airlock serve` still running?)",
            data_dir.display()
        )
    })?;
    let report = store.rebuild_index()?;
    println!(
        "reindexed {}: {} HF listings, {} Ollama manifests, {} verified files",
        data_dir.display(),
        report.listings,
        report.manifests,
        report.files
    );
    for s in &report.skipped {
        println!("skipped: {s}");
    }
    Ok(ExitCode::SUCCESS)
}
