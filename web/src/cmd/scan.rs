//! `airlock scan PATH…`: runs the verifier's scanner over files, directories (recursively) and
//! archives, and prints a report as text, JSON or SARIF.
//!
//! Exit codes follow `architecture.md`: 0 when every file is clean, 1 when any file has findings
//! or could not be analysed (unscannable is a refusal, not a crash), 2 when a file could not be
//! read at all, because then the run did not cover what it was asked to.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use verifier::{ScanReport, Severity, Verdict};

/// How deep directory recursion goes; deeper trees are reported as an error rather than followed.
const MAX_DIR_DEPTH: usize = 64;

/// Output formats of `airlock scan`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// One block per file, findings indented below it.
    Text,
    /// One JSON document with every report.
    Json,
    /// SARIF 2.1.0, for code-scanning dashboards.
    Sarif,
}

/// Arguments of `airlock scan`.
#[derive(clap::Args, Debug)]
pub struct ScanArgs {
    /// Files or directories to scan (directories recursively; archives are scanned inside).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Also print informational findings (allowlisted imports, skipped tensor data).
    #[arg(long, short)]
    pub verbose: bool,
    /// Never show a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// List every global each pickle references, how it is used, whether that use is allowed
    /// and why (the allowlist entry's source, or the refusal reason).
    #[arg(long)]
    pub explain: bool,
    /// Admit an organisation's own pickle class, as `[scan] allow_globals` does for the mirror
    /// (repeatable). Names that can execute code (`os.system`) are rejected.
    #[arg(long = "allow-global", value_name = "MODULE.NAME")]
    pub allow_globals: Vec<String>,
}

/// One scanned file, or one that could not be read.
struct Outcome {
    path: PathBuf,
    result: Result<ScanReport, String>,
}

/// Runs the command.
pub fn run(args: ScanArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let mut options = verifier::ScanOptions::new();
    for g in &args.allow_globals {
        options = options.allow_global(g)?;
    }
    if args.explain {
        options = options.explain();
    }
    let mut files = Vec::new();
    let mut walk_errors = Vec::new();
    for p in &args.paths {
        collect(p, 0, &mut files, &mut walk_errors);
    }
    let total_bytes: u64 = files.iter().map(|(_, n)| *n).sum();
    // A bar only when it helps: many files or much data, and a terminal to draw on (indicatif
    // hides itself when stderr is not a terminal).
    let bar = if !args.no_progress && (files.len() > 20 || total_bytes > (256 << 20)) {
        let b = indicatif::ProgressBar::new(total_bytes);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        ) {
            b.set_style(style);
        }
        Some(b)
    } else {
        None
    };
    let mut outcomes: Vec<Outcome> = walk_errors;
    for (path, len) in files {
        if let Some(b) = &bar {
            b.set_message(
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
        let result = scan_file(&path, len, &options);
        if let Some(b) = &bar {
            b.inc(len);
        }
        outcomes.push(Outcome { path, result });
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let elapsed = started.elapsed();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match args.format {
        OutputFormat::Text => print_text(&mut out, &outcomes, args.verbose, elapsed)?,
        OutputFormat::Json => serde_json::to_writer_pretty(&mut out, &json_report(&outcomes))?,
        OutputFormat::Sarif => serde_json::to_writer_pretty(&mut out, &sarif_report(&outcomes))?,
    }
    if args.format != OutputFormat::Text {
        writeln!(out)?;
    }
    Ok(exit_code(&outcomes))
}

fn exit_code(outcomes: &[Outcome]) -> ExitCode {
    if outcomes.iter().any(|o| o.result.is_err()) {
        ExitCode::from(2)
    } else if outcomes
        .iter()
        .any(|o| matches!(&o.result, Ok(r) if !r.is_clean()))
    {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Expands `p` into files (with sizes); unreadable paths become error outcomes.
fn collect(p: &Path, depth: usize, files: &mut Vec<(PathBuf, u64)>, errors: &mut Vec<Outcome>) {
    let meta = match std::fs::metadata(p) {
        Ok(m) => m,
        Err(e) => {
            errors.push(Outcome {
                path: p.to_owned(),
                result: Err(e.to_string()),
            });
            return;
        }
    };
    if meta.is_file() {
        files.push((p.to_owned(), meta.len()));
        return;
    }
    if !meta.is_dir() {
        return;
    }
    if depth >= MAX_DIR_DEPTH {
        errors.push(Outcome {
            path: p.to_owned(),
            result: Err("directory tree too deep".into()),
        });
        return;
    }
    let entries = match std::fs::read_dir(p) {
        Ok(rd) => rd,
        Err(e) => {
            errors.push(Outcome {
                path: p.to_owned(),
                result: Err(e.to_string()),
            });
            return;
        }
    };
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for c in children {
        // Symlinked directories are not followed, so a link loop cannot make the walk endless.
        let is_link_dir = std::fs::symlink_metadata(&c)
            .map(|m| m.file_type().is_symlink())
            .unwrap_or(false)
            && c.is_dir();
        if !is_link_dir {
            collect(&c, depth + 1, files, errors);
        }
    }
}

fn scan_file(path: &Path, len: u64, options: &verifier::ScanOptions) -> Result<ScanReport, String> {
    let f = std::fs::File::open(path).map_err(|e| e.to_string())?;
    verifier::scan_with(BufReader::with_capacity(256 * 1024, f), len, options)
        .map_err(|e| e.to_string())
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "CRITICAL",
    }
}

fn print_text(
    out: &mut impl Write,
    outcomes: &[Outcome],
    verbose: bool,
    elapsed: std::time::Duration,
) -> std::io::Result<()> {
    let (mut clean, mut flagged, mut unscannable, mut errors) = (0, 0, 0, 0);
    for o in outcomes {
        let path = o.path.display();
        match &o.result {
            Err(e) => {
                errors += 1;
                writeln!(out, "{path}: ERROR {e}")?;
            }
            Ok(r) => {
                let fmt = serde_json::to_value(r.format)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                match &r.verdict {
                    Verdict::Clean => {
                        clean += 1;
                        writeln!(out, "{path}: clean ({fmt})")?;
                    }
                    Verdict::Findings => {
                        flagged += 1;
                        writeln!(out, "{path}: FINDINGS ({fmt})")?;
                    }
                    Verdict::Unscannable { reason } => {
                        unscannable += 1;
                        writeln!(out, "{path}: UNSCANNABLE ({fmt}): {reason}")?;
                    }
                }
                let floor = if verbose {
                    Severity::Info
                } else {
                    Severity::Low
                };
                for f in r.findings.iter().filter(|f| f.severity >= floor) {
                    writeln!(
                        out,
                        "    [{}] {}",
                        severity_word(f.severity),
                        verifier::describe(f)
                    )?;
                }
                for g in &r.admitted_globals {
                    writeln!(out, "    admitted by --allow-global: {g}")?;
                }
                print_globals(out, &r.globals)?;
            }
        }
    }
    writeln!(
        out,
        "{} files: {clean} clean, {flagged} with findings, {unscannable} unscannable, {errors} errors ({:.2}s)",
        outcomes.len(),
        elapsed.as_secs_f64()
    )
}

/// The `--explain` table: one line per use of a global, `allowed`/`REFUSED` first so a reviewer
/// can scan the column.
fn print_globals(
    out: &mut impl Write,
    globals: &[verifier::GlobalDecision],
) -> std::io::Result<()> {
    if globals.is_empty() {
        return Ok(());
    }
    writeln!(out, "    globals:")?;
    for g in globals {
        let word = if g.allowed { "allowed" } else { "REFUSED" };
        let at = if g.location.is_empty() {
            format!("{:#x}", g.offset)
        } else {
            format!("{} {:#x}", g.location, g.offset)
        };
        let resolves = g
            .resolves_to
            .as_ref()
            .map(|r| format!(" (= {r})"))
            .unwrap_or_default();
        writeln!(
            out,
            "      {word:<7} {:<8} {}{resolves} at {at}: {}",
            g.usage.split(' ').next().unwrap_or(""),
            g.global,
            g.reason
        )?;
    }
    Ok(())
}

fn json_report(outcomes: &[Outcome]) -> serde_json::Value {
    let files: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(r) => serde_json::json!({
                "path": o.path.display().to_string(),
                "clean": r.is_clean(),
                "summary": r.summary(),
                "report": r,
            }),
            Err(e) => serde_json::json!({ "path": o.path.display().to_string(), "error": e }),
        })
        .collect();
    serde_json::json!({ "files": files })
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Critical | Severity::High => "error",
        Severity::Medium => "warning",
        Severity::Low | Severity::Info => "note",
    }
}

fn sarif_report(outcomes: &[Outcome]) -> serde_json::Value {
    let mut results = Vec::new();
    for o in outcomes {
        let uri = o.path.display().to_string();
        let loc = |region: Option<u64>, inner: &str| {
            let mut phys = serde_json::json!({ "artifactLocation": { "uri": uri } });
            if let Some(off) = region {
                phys["region"] = serde_json::json!({ "byteOffset": off });
            }
            let mut l = serde_json::json!({ "physicalLocation": phys });
            if !inner.is_empty() {
                l["logicalLocations"] =
                    serde_json::json!([{ "fullyQualifiedName": inner, "kind": "member" }]);
            }
            l
        };
        match &o.result {
            Err(e) => results.push(serde_json::json!({
                "ruleId": "airlock/error",
                "level": "error",
                "message": { "text": format!("could not scan: {e}") },
                "locations": [loc(None, "")],
            })),
            Ok(r) => {
                if let Verdict::Unscannable { reason } = &r.verdict {
                    results.push(serde_json::json!({
                        "ruleId": "airlock/unscannable",
                        "level": "error",
                        "message": { "text": reason },
                        "locations": [loc(None, "")],
                    }));
                }
                for f in r.findings.iter().filter(|f| f.severity >= Severity::Low) {
                    // Offsets inside archive members are relative to the member, so the byte
                    // region is only given for findings in the file itself.
                    let region = if f.location.is_empty() {
                        f.offset
                    } else {
                        None
                    };
                    results.push(serde_json::json!({
                        "ruleId": format!("airlock/{}", severity_word(f.severity).to_lowercase()),
                        "level": sarif_level(f.severity),
                        "message": { "text": verifier::describe(f) },
                        "locations": [loc(region, &f.location)],
                    }));
                }
            }
        }
    }
    serde_json::json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "airlock",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": [
                    { "id": "airlock/critical", "shortDescription": { "text": "Known code execution" } },
                    { "id": "airlock/high", "shortDescription": { "text": "Likely exploit or loader attack" } },
                    { "id": "airlock/medium", "shortDescription": { "text": "Not on the allowlist or structurally wrong" } },
                    { "id": "airlock/low", "shortDescription": { "text": "Unusual" } },
                    { "id": "airlock/unscannable", "shortDescription": { "text": "Could not be analysed" } },
                    { "id": "airlock/error", "shortDescription": { "text": "Could not be read" } }
                ]
            }},
            "results": results,
        }]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(bytes: &[u8]) -> Outcome {
        let report = verifier::scan(std::io::Cursor::new(bytes.to_vec()), bytes.len() as u64);
        Outcome {
            path: PathBuf::from("m.pkl"),
            result: report.map_err(|e| e.to_string()),
        }
    }

    const EVIL: &[u8] = b"cos\nsystem\n(S'id'\ntR.";

    #[test]
    fn exit_codes_follow_the_contract() {
        let clean = outcome(b"hello\n");
        assert_eq!(exit_code(std::slice::from_ref(&clean)), ExitCode::SUCCESS);
        assert_eq!(exit_code(&[clean, outcome(EVIL)]), ExitCode::from(1));
        let err = Outcome {
            path: PathBuf::from("gone"),
            result: Err("No such file".into()),
        };
        assert_eq!(exit_code(&[outcome(EVIL), err]), ExitCode::from(2));
    }

    #[test]
    fn sarif_names_the_finding_and_its_offset() {
        let v = sarif_report(&[outcome(EVIL)]);
        assert_eq!(v["version"], "2.1.0");
        let r = &v["runs"][0]["results"][0];
        assert_eq!(r["level"], "error");
        assert_eq!(r["ruleId"], "airlock/critical");
        assert!(r["message"]["text"]
            .as_str()
            .is_some_and(|t| t.contains("os.system")));
        assert_eq!(
            r["locations"][0]["physicalLocation"]["region"]["byteOffset"],
            19
        );
    }

    #[test]
    fn text_report_has_a_total_line() {
        let mut out = Vec::new();
        print_text(&mut out, &[outcome(EVIL)], false, std::time::Duration::ZERO)
            .expect("vec write");
        let s = String::from_utf8(out).expect("utf-8");
        assert!(s.contains("m.pkl: FINDINGS (pickle)"), "{s}");
        assert!(s.contains("1 files: 0 clean, 1 with findings"), "{s}");
    }
}
