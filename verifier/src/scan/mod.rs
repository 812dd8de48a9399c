//! The model-file scanner: decides, from bytes alone, whether a file could execute code or attack
//! its loader.
//!
//! Invariants:
//! - Formats are recognised by content (magic numbers and structure), never by file name.
//! - Nothing is ever executed or unpickled; pickles are decoded symbolically, opcode by opcode.
//! - Every length read from the input is bounded before anything is allocated for it, and every
//!   recursion (nested archives, pickles inside pickles, JSON) carries a depth limit.
//! - Only what a loader would interpret is read: a zip's central directory and its pickle entries,
//!   a safetensors or GGUF header. Tensor bytes are skipped, so the cost does not grow with them.
//! - Allowlist first: a pickle may import only the callables its context (PyTorch checkpoint,
//!   plain data pickle) needs; anything else is a finding. A format that cannot be analysed is
//!   `Unscannable`, which the mirror refuses like a finding.

mod gguf;
mod jinja;
mod json;
mod keras;
mod numpy;
mod onnx;
mod pickle;
mod policy;
mod safetensors;
mod source;
mod tar;
mod text;
mod zip;

use std::collections::BTreeSet;
use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::VerifyError;

/// How deep containers may nest (zip in zip, pickle bytes inside a pickle, …) before the scanner
/// gives up; a real model never nests more than a few levels, a bomb nests thousands.
const MAX_DEPTH: u32 = 8;

/// At most this many findings are kept per file; a hostile file could otherwise produce one per
/// opcode and exhaust memory through the report itself.
const MAX_FINDINGS: usize = 2_000;

/// The format a file was recognised as, from its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Format {
    /// A bare pickle stream (any protocol), including sklearn `.pkl` and raw `torch.save` output.
    Pickle,
    /// A PyTorch zip checkpoint (`torch.save` since 1.6): pickles plus raw tensor entries.
    PytorchZip,
    /// The pre-zip `torch.save` format: a sequence of pickles followed by storage bytes.
    PytorchLegacy,
    /// The ancient tar-based `torch.save` format.
    PytorchTar,
    /// TorchScript archive (zip with `code/` and `constants.pkl`).
    Torchscript,
    /// Any other zip archive; every entry is scanned by content.
    Zip,
    /// Any other tar archive; every member is scanned by content.
    Tar,
    /// A NumPy `.npy` array.
    Npy,
    /// A NumPy `.npz` archive of `.npy` members.
    Npz,
    /// A joblib dump (a pickle stream with raw array bytes between its opcodes).
    Joblib,
    /// A zlib- or gzip-compressed stream (joblib's compressed dumps); its content is scanned.
    Compressed,
    /// safetensors: a JSON header and raw tensor bytes.
    Safetensors,
    /// GGUF (llama.cpp): typed metadata, tensor infos and tensor data.
    Gguf,
    /// A Keras 2 HDF5 model (`.h5`/`.hdf5`) or any other HDF5 file.
    KerasH5,
    /// A Keras 3 `.keras` zip (config.json + weights).
    KerasV3,
    /// An ONNX protobuf model.
    Onnx,
    /// A JSON document (configs, tokenizer files).
    Json,
    /// Plain UTF-8 text (model cards, vocabularies).
    Text,
    /// Bytes in no recognised format that no model loader would execute (for example an ONNX
    /// external-data sidecar of raw floats).
    Raw,
    /// A recognised format the scanner does not analyse (TFLite, 7z, xz, …).
    Unknown,
}

/// The outcome of a scan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing of severity `Medium` or higher was found.
    Clean,
    /// At least one finding of severity `Medium` or higher.
    Findings,
    /// The file (or a part of it) could not be analysed; under the default policy this is a
    /// refusal, because what cannot be read cannot be vouched for.
    Unscannable {
        /// Why the file could not be analysed.
        reason: String,
    },
}

/// How serious a finding is. `Medium` and above make a file not clean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A fact worth recording (an allowlisted import, a skipped data entry).
    Info,
    /// Unusual but not dangerous on its own.
    Low,
    /// Not on the allowlist, or structurally wrong in a way a loader might mis-handle.
    Medium,
    /// Likely exploitation or a loader attack (path traversal, bombs, code-carrying config).
    High,
    /// Known code execution (os.system, eval, marshalled code, Jinja sandbox escapes).
    Critical,
}

/// One thing the scanner noticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// How serious it is.
    pub severity: Severity,
    /// Where inside the file: an archive entry path such as `archive/data.pkl`, or empty for the
    /// file itself.
    pub location: String,
    /// Byte offset within `location` (the opcode, header field or entry), when it has one.
    pub offset: Option<u64>,
    /// What was found, e.g. `calls os.system`.
    pub message: String,
}

/// The result of scanning one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanReport {
    /// The outermost format recognised.
    pub format: Format,
    /// The overall outcome.
    pub verdict: Verdict,
    /// Everything noticed, most severe first.
    pub findings: Vec<Finding>,
    /// Pickle globals this file relies on that only the caller's [`ScanOptions::allow_global`]
    /// admitted, for the audit log (sorted, each once).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub admitted_globals: Vec<String>,
    /// With [`ScanOptions::explain`]: every pickle global the file references, each use once,
    /// in file order, with the decision and its reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub globals: Vec<GlobalDecision>,
}

/// One use of one pickle global and what the allowlist decided about it (`airlock scan --explain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlobalDecision {
    /// The pickle's location (archive entry), as in [`Finding::location`].
    pub location: String,
    /// Offset of the opcode within `location`.
    pub offset: u64,
    /// `module.name` as the pickle spells it.
    pub global: String,
    /// What a Python 3 unpickler loads instead, when that differs (`__builtin__.xrange` →
    /// `builtins.range`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolves_to: Option<String>,
    /// How the pickle uses it: `import`, or the opcode that calls or instantiates it.
    pub usage: String,
    /// Whether this use is acceptable.
    pub allowed: bool,
    /// Why: the allowlist entry's source, or the refusal reason.
    pub reason: String,
}

/// Most distinct global uses kept for `explain` per file (a hostile file could name millions).
const MAX_GLOBAL_NOTES: usize = 10_000;

/// What a scan may take from its caller: the operator's own admitted pickle globals, and whether
/// to explain every global decision.
#[derive(Debug, Clone, Default)]
pub struct ScanOptions {
    allow_globals: BTreeSet<String>,
    explain: bool,
}

impl ScanOptions {
    /// The defaults: only the built-in allowlist, no explanation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Admits `module.Name` (an organisation's own data class) in every pickle context. Refused
    /// when it is not a dotted Python name or when it is something the scanner grades as code
    /// execution (`os.system`, `builtins.eval`): no configuration can make those acceptable.
    pub fn allow_global(mut self, global: &str) -> Result<Self, VerifyError> {
        policy::check_configured(global).map_err(|reason| VerifyError::AllowGlobal {
            global: global.to_owned(),
            reason,
        })?;
        self.allow_globals.insert(global.to_owned());
        Ok(self)
    }

    /// Records every global use with its decision in [`ScanReport::globals`].
    pub fn explain(mut self) -> Self {
        self.explain = true;
        self
    }
}

impl ScanReport {
    /// True when the mirror may promote the file: no finding of `Medium` or above and nothing
    /// left unscanned.
    pub fn is_clean(&self) -> bool {
        matches!(self.verdict, Verdict::Clean)
    }

    /// The most severe finding, if any.
    pub fn worst(&self) -> Option<&Finding> {
        self.findings.first()
    }

    /// One line for refusals and logs, e.g. `data.pkl calls os.system at offset 0x3f`.
    pub fn summary(&self) -> String {
        match &self.verdict {
            Verdict::Clean => format!("clean ({})", format_name(self.format)),
            Verdict::Unscannable { reason } => format!("unscannable: {reason}"),
            Verdict::Findings => match self.worst() {
                Some(f) => describe(f),
                None => "findings".to_owned(),
            },
        }
    }
}

/// Renders one finding the way `summary` does: location, message, offset.
pub fn describe(f: &Finding) -> String {
    let mut s = String::new();
    if !f.location.is_empty() {
        s.push_str(&f.location);
        s.push(' ');
    }
    s.push_str(&f.message);
    if let Some(o) = f.offset {
        s.push_str(&format!(" at offset {o:#x}"));
    }
    s
}

fn format_name(f: Format) -> String {
    serde_json::to_value(f)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("{f:?}"))
}

/// Scans one file of `len` bytes read from `reader`.
///
/// Returns a report for every input, including malformed ones (those are findings or
/// `Unscannable`); an error means only that reading the input failed.
pub fn scan<R: Read + Seek>(reader: R, len: u64) -> Result<ScanReport, VerifyError> {
    scan_with(reader, len, &ScanOptions::default())
}

/// [`scan`] with the caller's options (admitted globals, explanation).
pub fn scan_with<R: Read + Seek>(
    mut reader: R,
    len: u64,
    options: &ScanOptions,
) -> Result<ScanReport, VerifyError> {
    let mut sink = Sink {
        options: Arc::new(options.clone()),
        ..Sink::default()
    };
    let format = match scan_any(&mut reader, len, "", 0, &mut sink) {
        Ok(f) => f,
        Err(Stop::Io(e)) => return Err(VerifyError::Io(e)),
        Err(Stop::Malformed { offset, reason }) => {
            sink.unscannable(format!("{reason} at offset {offset:#x}"));
            Format::Unknown
        }
    };
    Ok(sink.into_report(format))
}

/// Why a parser stopped early: the input could not be read, or it is malformed. A malformed
/// input is reported (fail closed), never an error.
#[derive(Debug)]
pub(crate) enum Stop {
    Io(std::io::Error),
    Malformed { offset: u64, reason: String },
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            Stop::Malformed {
                offset: 0,
                reason: "unexpected end of data".to_owned(),
            }
        } else {
            Stop::Io(e)
        }
    }
}

pub(crate) fn malformed<T>(offset: u64, reason: impl Into<String>) -> Result<T, Stop> {
    Err(Stop::Malformed {
        offset,
        reason: reason.into(),
    })
}

/// Collects findings while a scan runs.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    findings: Vec<Finding>,
    unscannable: Option<String>,
    dropped: usize,
    options: Arc<ScanOptions>,
    admitted: BTreeSet<String>,
    globals: Vec<GlobalDecision>,
    noted: std::collections::HashSet<(String, String, String)>,
}

impl Sink {
    /// An empty sink with the same options, for trial decodes merged later.
    pub(crate) fn child(&self) -> Sink {
        Sink {
            options: self.options.clone(),
            ..Sink::default()
        }
    }

    /// The operator's admitted globals.
    pub(crate) fn configured(&self) -> &policy::Configured {
        &self.options.allow_globals
    }

    /// Records that the scan relied on an operator-admitted global.
    pub(crate) fn admitted(&mut self, global: &str) {
        if !self.admitted.contains(global) {
            self.admitted.insert(global.to_owned());
        }
    }

    /// Records one use of a global for `explain` (each location, global and use once).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn note_global(
        &mut self,
        location: &str,
        offset: u64,
        module: &str,
        name: &str,
        usage: &str,
        allowed: bool,
        reason: &str,
    ) {
        if !self.options.explain || self.globals.len() >= MAX_GLOBAL_NOTES {
            return;
        }
        let global = format!("{module}.{name}");
        let key = (location.to_owned(), global.clone(), usage.to_owned());
        if !self.noted.insert(key) {
            return;
        }
        let (m, n) = policy::canonical(module, name);
        let canon = format!("{m}.{n}");
        self.globals.push(GlobalDecision {
            location: location.to_owned(),
            offset,
            resolves_to: (canon != global).then_some(canon),
            global,
            usage: usage.to_owned(),
            allowed,
            reason: reason.to_owned(),
        });
    }

    pub(crate) fn add(
        &mut self,
        severity: Severity,
        location: &str,
        offset: Option<u64>,
        message: impl Into<String>,
    ) {
        if self.findings.len() >= MAX_FINDINGS {
            self.dropped += 1;
            return;
        }
        self.findings.push(Finding {
            severity,
            location: location.to_owned(),
            offset,
            message: message.into(),
        });
    }

    pub(crate) fn unscannable(&mut self, reason: impl Into<String>) {
        if self.unscannable.is_none() {
            self.unscannable = Some(reason.into());
        }
    }

    pub(crate) fn merge(&mut self, other: Sink) {
        for f in other.findings {
            self.add(f.severity, &f.location, f.offset, f.message);
        }
        self.dropped += other.dropped;
        if let Some(r) = other.unscannable {
            self.unscannable(r);
        }
        self.admitted.extend(other.admitted);
        for g in other.globals {
            if self.globals.len() < MAX_GLOBAL_NOTES {
                self.globals.push(g);
            }
        }
    }

    fn into_report(mut self, format: Format) -> ScanReport {
        if self.dropped > 0 {
            let n = self.dropped;
            self.findings.push(Finding {
                severity: Severity::Info,
                location: String::new(),
                offset: None,
                message: format!("{n} further findings not recorded"),
            });
        }
        // Stable sort: most severe first, file order within a severity.
        self.findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        let verdict = if self.findings.iter().any(|f| f.severity >= Severity::Medium) {
            // Findings decide the verdict; a part that could not be analysed is kept as a
            // finding so the report still says so.
            if let Some(reason) = self.unscannable {
                self.findings.push(Finding {
                    severity: Severity::Medium,
                    location: String::new(),
                    offset: None,
                    message: format!("not fully analysed: {reason}"),
                });
            }
            Verdict::Findings
        } else if let Some(reason) = self.unscannable {
            Verdict::Unscannable { reason }
        } else {
            Verdict::Clean
        };
        ScanReport {
            format,
            verdict,
            findings: self.findings,
            admitted_globals: self.admitted.into_iter().collect(),
            globals: self.globals,
        }
    }
}

/// Joins an outer location and an inner entry name: `model.zip` + `data.pkl` → `model.zip/data.pkl`.
pub(crate) fn join(outer: &str, inner: &str) -> String {
    if outer.is_empty() {
        inner.to_owned()
    } else {
        format!("{outer}/{inner}")
    }
}

/// Reads up to `buf.len()` bytes at `offset`, returning how many were read (short at EOF).
pub(crate) fn read_at<R: Read + Seek + ?Sized>(
    r: &mut R,
    offset: u64,
    buf: &mut [u8],
) -> Result<usize, Stop> {
    r.seek(SeekFrom::Start(offset))?;
    let mut n = 0;
    while n < buf.len() {
        let Some(rest) = buf.get_mut(n..) else { break };
        match r.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Stop::Io(e)),
        }
    }
    Ok(n)
}

/// Object-safe `Read + Seek`: nested containers hand sub-readers to the dispatcher through it,
/// which keeps the generic code from instantiating itself once per nesting level.
pub(crate) trait ReadSeek: Read + Seek {}
impl<T: Read + Seek + ?Sized> ReadSeek for T {}

/// Recognises the format of `r` by content and runs its scanner. `loc` names the file inside its
/// container ("" for the top level); `depth` counts the containers around it.
pub(crate) fn scan_any(
    r: &mut dyn ReadSeek,
    len: u64,
    loc: &str,
    depth: u32,
    sink: &mut Sink,
) -> Result<Format, Stop> {
    if depth > MAX_DEPTH {
        sink.add(
            Severity::High,
            loc,
            None,
            format!("containers nested deeper than {MAX_DEPTH} levels"),
        );
        return Ok(Format::Unknown);
    }
    let mut head = [0u8; 1024];
    let n = read_at(r, 0, &mut head)?;
    let head = head.get(..n).unwrap_or(&[]);
    if head.is_empty() {
        return Ok(Format::Raw);
    }
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        return zip::scan(r, len, loc, depth, sink);
    }
    if head.starts_with(b"\x93NUMPY") {
        return numpy::scan_npy(r, len, loc, depth, sink);
    }
    if head.starts_with(b"GGUF") {
        gguf::scan(r, len, loc, sink)?;
        return Ok(Format::Gguf);
    }
    if keras::is_hdf5(r, head)? {
        keras::scan_h5(r, len, loc, sink)?;
        return Ok(Format::KerasH5);
    }
    if head.get(257..262) == Some(b"ustar") {
        return tar::scan(r, len, loc, depth, sink);
    }
    if safetensors::looks_like(head, len) {
        safetensors::scan(r, len, loc, sink)?;
        return Ok(Format::Safetensors);
    }
    if let Some(kind) = source::compression(head) {
        if let Some(f) = source::scan_compressed(r, len, kind, loc, depth, sink)? {
            return Ok(f);
        }
    }
    if let Some(what) = unsupported_magic(head) {
        sink.unscannable(format!(
            "{}{what} content is not analysed",
            if loc.is_empty() {
                String::new()
            } else {
                format!("{loc}: ")
            }
        ));
        return Ok(Format::Unknown);
    }
    if head.first() == Some(&0x80) {
        return pickle::scan_file(r, len, loc, depth, sink);
    }
    // Protocol 0/1 pickles have no magic: try decoding. A stream that fails before importing or
    // calling anything cannot run code when unpickled, so it is treated as other data.
    if pickle::opcode_known(head.first().copied().unwrap_or(0)) {
        let mut trial = sink.child();
        r.seek(SeekFrom::Start(0))?;
        let looks_text = text::is_text(head, head.len() as u64 == len);
        if pickle::is_pickle_trial(r, looks_text, loc, &mut trial)? {
            sink.merge(trial);
            return Ok(Format::Pickle);
        }
    }
    if let Some(f) = text::scan(r, len, head, loc, sink)? {
        return Ok(f);
    }
    if onnx::scan(r, len, loc, sink)? {
        return Ok(Format::Onnx);
    }
    sink.add(
        Severity::Info,
        loc,
        None,
        "no known model format; opaque data that no loader executes",
    );
    Ok(Format::Raw)
}

/// Formats recognised by magic that the scanner does not analyse.
fn unsupported_magic(head: &[u8]) -> Option<&'static str> {
    // bzip2: "BZh", the block size digit, then the block magic (pi in BCD).
    if head.len() > 10 && head.starts_with(b"BZh") && head.get(4..10) == Some(b"1AY&SY") {
        return Some("bzip2-compressed");
    }
    if head.get(4..8) == Some(b"TFL3") {
        return Some("TFLite flatbuffer");
    }
    let table: &[(&[u8], &str)] = &[
        (b"7z\xbc\xaf\x27\x1c", "7z archive"),
        (b"Rar!\x1a\x07", "RAR archive"),
        (b"\xfd7zXZ\x00", "xz-compressed"),
        (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
        (b"\x04\x22\x4d\x18", "lz4-compressed"),
        (b"\x5d\x00\x00", "lzma-compressed"),
    ];
    table
        .iter()
        .find(|(m, _)| head.starts_with(m))
        .map(|(_, w)| *w)
}

/// A window `[start, start+len)` of a seekable reader, itself seekable; used for stored archive
/// members so they can be scanned without copying.
pub(crate) struct Window<'a, R: ?Sized> {
    inner: &'a mut R,
    start: u64,
    len: u64,
    pos: u64,
}

impl<'a, R: Read + Seek + ?Sized> Window<'a, R> {
    pub(crate) fn new(inner: &'a mut R, start: u64, len: u64) -> Self {
        Window {
            inner,
            start,
            len,
            pos: 0,
        }
    }
}

impl<R: Read + Seek + ?Sized> Read for Window<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        self.inner
            .seek(SeekFrom::Start(self.start.saturating_add(self.pos)))?;
        let Some(b) = buf.get_mut(..want) else {
            return Ok(0);
        };
        let n = self.inner.read(b)?;
        self.pos = self.pos.saturating_add(n as u64);
        Ok(n)
    }
}

impl<R: Read + Seek + ?Sized> Seek for Window<'_, R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        match new {
            Some(p) => {
                self.pos = p;
                Ok(p)
            }
            None => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "seek out of range",
            )),
        }
    }
}
