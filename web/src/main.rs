//! `airlock`: the verifying model mirror. `main` parses arguments, dispatches, and turns the outcome
//! into an exit code; the work lives in `cmd::*` and in the `mirror` crate.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

mod admin;
mod blob;
mod body;
mod client;
mod cmd;
mod grant;
mod hf;
mod internal;
mod logging;
mod ollama;
mod ops;
mod origin;
#[cfg(test)]
mod parse_fuzz;
mod request;
mod tls;
mod ui;

/// Airlock: a verifying mirror for Hugging Face and Ollama models.
#[derive(Parser, Debug)]
#[command(name = "airlock", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the mirror (HF API; embedded defaults: 127.0.0.1:8080, ./airlock-data).
    Serve(cmd::serve::ServeArgs),
    /// Rebuild the index from the data directory's blobs and listings (server stopped).
    Reindex(cmd::reindex::ReindexArgs),
    /// Check the data directory: blobs hash to their names, index records reach existing blobs
    /// (server stopped; exit 0 consistent, 1 problems; --repair removes what cannot be vouched for).
    Fsck(cmd::fsck::FsckArgs),
    /// Bring a data directory written by an older airlock to this version's format (server stopped).
    Migrate(cmd::migrate::MigrateArgs),
    /// Evict least-recently-served blobs down to [store] max_bytes (server stopped; serve does
    /// this by itself); approved and pinned blobs stay unless --force.
    Gc(cmd::gc::GcArgs),
    /// Scan model files for code execution and loader attacks (exit 0 clean, 1 findings, 2 error).
    Scan(cmd::scan::ScanArgs),
    /// Verify a model's signature (exit 0 verified, 1 failed, 2 error).
    Verify(cmd::verify::VerifyArgs),
    /// Generate a governance key pair (governance.key, 0600, and governance.pub).
    Keygen(cmd::gov::KeygenArgs),
    /// Prepare, sign and send an approval of one exact version (exit 1 if refused).
    Approve(cmd::gov::ApproveArgs),
    /// Review requests: list, show, approve, deny.
    Requests(cmd::gov::RequestsArgs),
    /// Sign and send a revocation of an approval; serving stops at once.
    Revoke(cmd::gov::RevokeArgs),
    /// Replace the mirror's own key (audit log, bundles); the log records the hand-over (server stopped).
    RotateKey(cmd::rotate::RotateKeyArgs),
    /// Check, export and query the audit log (verify: exit 0 ok, 1 tampered).
    Audit(cmd::gov::AuditArgs),
    /// Export or import signed approval record files.
    Approvals(cmd::gov::ApprovalsArgs),
    /// Write a signed bundle of approved versions for an air-gapped mirror (server stopped).
    Export(cmd::airgap::ExportArgs),
    /// Take in a bundle, re-verifying everything (exit 1 if refused; server stopped).
    Import(cmd::airgap::ImportArgs),
    /// Print a version's CycloneDX 1.6 ML-BOM (the one its bundles carry).
    Bom(cmd::airgap::BomArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `serve` installs its logger once its config (`[log]`) is loaded.
    if !matches!(cli.command, Command::Serve(_)) {
        logging::init(None);
    }
    let outcome = match cli.command {
        Command::Serve(args) => cmd::serve::run(args),
        Command::Reindex(args) => cmd::reindex::run(args),
        Command::Fsck(args) => cmd::fsck::run(args),
        Command::Migrate(args) => cmd::migrate::run(args),
        Command::Gc(args) => cmd::gc::run(args),
        Command::Scan(args) => cmd::scan::run(args),
        Command::Verify(args) => cmd::verify::run(args),
        Command::Keygen(args) => cmd::gov::keygen(args),
        Command::Approve(args) => cmd::gov::approve(args),
        Command::Requests(args) => cmd::gov::requests(args),
        Command::Revoke(args) => cmd::gov::revoke(args),
        Command::RotateKey(args) => cmd::rotate::run(args),
        Command::Audit(args) => cmd::gov::audit(args),
        Command::Approvals(args) => cmd::gov::approvals(args),
        Command::Export(args) => cmd::airgap::export(args),
        Command::Import(args) => cmd::airgap::import(args),
        Command::Bom(args) => cmd::airgap::bom(args),
    };
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("airlock: {e:#}");
            ExitCode::from(2)
        }
    }
}
