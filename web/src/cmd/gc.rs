//! `airlock gc`: the cache eviction pass that `serve` runs by itself when `[store] max_bytes` is
//! set, by hand (server stopped): least-recently-served blobs first, never what an approval or a
//! pin needs unless `--force`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `airlock gc`.
#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// TOML config file (data_dir, [store] max_bytes, the pins and governance keys).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the config and AIRLOCK_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Evict down to this many bytes (default: [store] max_bytes).
    #[arg(long)]
    pub max_bytes: Option<u64>,
    /// Also evict blobs that approvals and pins need, if the target cannot be met otherwise
    /// (they are fetched and verified again when next asked for).
    #[arg(long)]
    pub force: bool,
}

/// Runs one pass. Exit 0 when the store is at or under the target, 1 when what is left above it
/// is needed (approved or pinned) and `--force` was not given, 2 on error.
pub fn run(args: GcArgs) -> anyhow::Result<ExitCode> {
    let mut cfg = mirror::Config::load(args.config.as_deref(), |k| std::env::var(k).ok())?;
    if let Some(d) = args.data_dir {
        cfg.data_dir = d;
    }
    let target = args
        .max_bytes
        .or(cfg.store.max_bytes)
        .context("no target: pass --max-bytes or set [store] max_bytes")?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    let mirror = mirror::Mirror::open(&cfg, rt.handle().clone())
        .with_context(|| format!("opening {}", cfg.data_dir.display()))?;
    let report = mirror.gc(target, args.force)?;
    for (d, size) in &report.evicted {
        println!("evicted {d} ({size} bytes)");
    }
    println!(
        "{}: {} -> {} bytes (target {target}); {} blobs evicted{}",
        cfg.data_dir.display(),
        report.before,
        report.after,
        report.evicted.len(),
        if report.forced > 0 {
            format!(
                ", {} of them needed by approvals or pins (--force)",
                report.forced
            )
        } else {
            String::new()
        }
    );
    if report.after > target {
        println!(
            "{} bytes above the target are needed by approvals or pins; --force evicts them too",
            report.kept_needed.min(report.after - target)
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
