//! `airlock rotate-key`: replaces the mirror's own key (audit log, exported bundles) with a new
//! one; the audit log records the hand-over, signed by both (server stopped).

use std::process::ExitCode;

use anyhow::Context;

/// Arguments of `airlock rotate-key`.
#[derive(clap::Args, Debug)]
pub struct RotateKeyArgs {
    #[command(flatten)]
    pub data: super::gov::DataArgs,
}

/// Rotates the key. Exit 0 rotated; 2 refused or failed (run it again after a crash: it finishes
/// the interrupted rotation).
pub fn run(args: RotateKeyArgs) -> anyhow::Result<ExitCode> {
    let dir = super::gov::data_dir(&args.data)?;
    // The data directory's lock keeps a live server (the log's only writer) out.
    let _store = mirror::Store::open(&dir).with_context(|| {
        format!(
            "opening {} (is `airlock serve` still running?)",
            dir.display()
        )
    })?;
    let r = mirror::governance::rotate::rotate_mirror_key(&dir)?;
    match r.line {
        Some(line) => println!(
            "mirror key rotated: {} -> {} (hand-over at audit line {line})",
            r.old, r.new
        ),
        None => println!(
            "mirror key rotation finished: {} -> {} (hand-over already in the audit log)",
            r.old, r.new
        ),
    }
    println!(
        "new public key: {}; the old one is kept in {}/{}.pub. Importing mirrors: add the new key to \
         [airgap] trusted_exporters, then drop the old one.",
        dir.join("mirror.pub").display(),
        dir.join(mirror::governance::rotate::RETIRED_DIR).display(),
        r.old
    );
    Ok(ExitCode::SUCCESS)
}
