//! `airlock migrate`: brings a data directory written by an older Airlock to this build's format
//! (server stopped). `airlock serve` refuses a directory that needs it and names this command.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `airlock migrate`.
#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// TOML config file (for `data_dir`).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the config and AIRLOCK_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Runs the pending steps. Exit 0: the directory is at the current format; 2: refused or failed
/// (the message says why; an interrupted run is finished by running the command again).
pub fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let cfg = mirror::Config::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    let data_dir = args.data_dir.unwrap_or(cfg.data_dir);
    let report = mirror::format::migrate::migrate(&data_dir)
        .with_context(|| format!("migrating {}", data_dir.display()))?;
    for s in &report.steps {
        println!("migrated: {s}");
    }
    println!(
        "{}: data format version {} (was {})",
        data_dir.display(),
        report.to,
        report.from
    );
    Ok(ExitCode::SUCCESS)
}
