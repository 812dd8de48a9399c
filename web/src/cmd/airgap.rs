//! `airlock export`, `airlock import` and `airlock bom`: air-gapped sites. The work lives in
//! `mirror::bundle`; these parse arguments, draw the progress bar and print the outcome.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use mirror::bundle::{Imported, Selection};

/// `airlock export`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Writes a signed bundle of approved versions for an air-gapped mirror: parts part-0000, part-0001, … \
of at most --part-size bytes, manifest.json (every part and artifact by sha256 and size, and the \
versions they make up) and manifest.sig (signed with this mirror's mirror.key; the offline side \
lists mirror.pub in [airgap] trusted_exporters). Carries blobs, HF listings, OCI manifests, \
approval and revocation records, scan results and a CycloneDX ML-BOM per version; never keys or \
trust roots. Re-running an interrupted export keeps the parts already written (re-hashed). \
Stop `airlock serve` first: the index is single-process.")]
pub struct ExportArgs {
    /// TOML config file (for `data_dir` and `[governance] keys`).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the config and AIRLOCK_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Directory to write the bundle into (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// Export this approval's version (repeatable).
    #[arg(long = "approval", value_name = "ID", required_unless_present_any = ["all_approved", "all"])]
    pub approvals: Vec<String>,
    /// Export every usable (not revoked, not expired) approval's version.
    #[arg(long, conflicts_with_all = ["approvals", "all"])]
    pub all_approved: bool,
    /// Export every version held in full, approved or not (setups that use allow rules).
    #[arg(long, conflicts_with = "approvals")]
    pub all: bool,
    /// Largest part, in bytes (FAT32 holds 4 GiB - 1 per file).
    #[arg(long, default_value_t = 4 * 1024 * 1024 * 1024 - 1)]
    pub part_size: u64,
    /// The manifest.json of an earlier bundle: write only what it did not carry.
    #[arg(long, value_name = "OLD_MANIFEST")]
    pub since: Option<PathBuf>,
}

/// `airlock import`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Imports a bundle written by `airlock export`. Trusts the manifest only if manifest.sig is by a key \
in [airgap] trusted_exporters; re-hashes every artifact, re-scans every blob, re-checks approvals \
against this mirror's [governance] keys and signatures against its [[trust]] rules. Nothing is \
visible until the whole bundle passed; a bad bundle is refused (exit 1) naming the first bad item \
and leaves the store as it was. Parts are read in place; an interrupted import resumes; importing \
twice changes nothing. Stop `airlock serve` first: the index is single-process.")]
pub struct ImportArgs {
    /// The bundle directory.
    pub path: PathBuf,
    /// TOML config file.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the config and AIRLOCK_DATA_DIR).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// `airlock bom`.
#[derive(clap::Args, Debug)]
pub struct BomArgs {
    #[command(subcommand)]
    pub what: BomWhat,
    /// TOML config file.
    #[arg(long, short, global = true)]
    pub config: Option<PathBuf>,
    /// Data directory (overrides the config and AIRLOCK_DATA_DIR).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
}

/// Which version.
#[derive(clap::Subcommand, Debug)]
pub enum BomWhat {
    /// A Hugging Face repository (`org/repo` or `datasets/org/repo`).
    Hf {
        /// The repository.
        name: String,
        /// The commit (40 hex).
        #[arg(long)]
        revision: String,
    },
    /// An Ollama model (`namespace/model`).
    Ollama {
        /// The model.
        name: String,
        /// The manifest digest (`sha256:…`).
        #[arg(long)]
        revision: String,
    },
}

fn load(
    config: Option<&std::path::Path>,
    data_dir: Option<PathBuf>,
) -> anyhow::Result<mirror::Config> {
    let mut cfg = mirror::Config::load(config, |k| std::env::var(k).ok())?;
    if let Some(d) = data_dir {
        cfg.data_dir = d;
    }
    Ok(cfg)
}

fn open(
    cfg: &mirror::Config,
) -> anyhow::Result<(Arc<mirror::Store>, mirror::governance::Governance)> {
    let store = Arc::new(
        mirror::Store::open_with(&cfg.data_dir, &cfg.store).with_context(|| {
            format!(
                "opening {} (is `airlock serve` still running?)",
                cfg.data_dir.display()
            )
        })?,
    );
    let gov = mirror::governance::Governance::open(cfg, store.clone())?;
    Ok((store, gov))
}

fn bar(total_hint: &str) -> indicatif::ProgressBar {
    // indicatif draws only when stderr is a terminal.
    let b = indicatif::ProgressBar::new(0);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} {msg}",
    ) {
        b.set_style(style);
    }
    b.set_message(total_hint.to_owned());
    b
}

/// Writes a bundle.
pub fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let cfg = load(args.config.as_deref(), args.data_dir)?;
    let selection = if args.all {
        Selection::All
    } else if args.all_approved {
        Selection::AllApproved
    } else {
        let mut ids = Vec::new();
        for a in &args.approvals {
            ids.push(a.parse().with_context(|| format!("--approval {a}"))?);
        }
        Selection::Approvals(ids)
    };
    let (store, gov) = open(&cfg)?;
    let b = bar("export");
    let progress = |done: u64, total: u64| {
        b.set_length(total);
        b.set_position(done);
    };
    let out = mirror::bundle::export(
        &store,
        &gov,
        &selection,
        &args.out,
        args.part_size,
        args.since.as_deref(),
        &progress,
    )?;
    b.finish_and_clear();
    println!(
        "exported {} version(s), {} items, {} bytes in {} part(s) ({} kept from an earlier run) to {}",
        out.versions.len(),
        out.items,
        out.bytes,
        out.parts_written + out.parts_kept,
        out.parts_kept,
        args.out.display()
    );
    for v in &out.versions {
        println!("  {v}");
    }
    println!("bundle {}", out.bundle);
    Ok(ExitCode::SUCCESS)
}

/// Imports a bundle; exit 1 if it is refused.
pub fn import(args: ImportArgs) -> anyhow::Result<ExitCode> {
    let cfg = load(args.config.as_deref(), args.data_dir)?;
    let b = bar("import");
    let progress = |done: u64, total: u64| {
        b.set_length(total);
        b.set_position(done);
    };
    let outcome = mirror::bundle::import(&cfg, &args.path, &progress)?;
    b.finish_and_clear();
    match outcome {
        Imported::Done {
            bundle,
            exporter,
            versions,
            new_blobs,
            new_bytes,
        } => {
            println!(
                "imported bundle {bundle} from exporter {exporter}: {} version(s), {new_blobs} new blob(s), {new_bytes} bytes",
                versions.len()
            );
            for v in &versions {
                println!("  {v}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Imported::Refused { item, reason } => {
            eprintln!("airlock: bundle refused: {item}: {reason}");
            eprintln!("airlock: nothing was imported; the store is unchanged");
            Ok(ExitCode::from(1))
        }
    }
}

/// Prints one version's CycloneDX ML-BOM.
pub fn bom(args: BomArgs) -> anyhow::Result<ExitCode> {
    let cfg = load(args.config.as_deref(), args.data_dir)?;
    let (store, gov) = open(&cfg)?;
    let doc = match &args.what {
        BomWhat::Hf { name, revision } => mirror::bundle::bom_hf(&store, &gov, name, revision)?,
        BomWhat::Ollama { name, revision } => {
            mirror::bundle::bom_ollama(&store, &gov, name, revision)?
        }
    };
    println!("{}", serde_json::to_string_pretty(&doc)?);
    Ok(ExitCode::SUCCESS)
}
