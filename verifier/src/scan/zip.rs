//! Zip archives: PyTorch checkpoints, TorchScript, `.npz`, Keras 3 `.keras`, and plain archives.
//!
//! Only the central directory and each entry's local header are read, plus the entries a loader
//! would interpret (pickles, configs, nested archives). Tensor entries (`…/data/N`) are never read.
//! Structural tricks that make different readers see different archives are findings: local and
//! central headers that disagree (CVE-2025-1944), encryption flags that PyTorch ignores
//! (CVE-2025-1945), CRC mismatches (CVE-2025-10156), traversal names, overlapping entries, bombs.

use std::collections::HashSet;
use std::io::{Cursor, Read, Seek};

use super::policy::Context;
use super::{
    join, keras, malformed, pickle, read_at, scan_any, Format, Severity, Sink, Stop, Window,
};

/// Largest central directory read into memory.
const MAX_CD: u64 = 64 << 20;
const MAX_ENTRIES: u64 = 1 << 20;
/// Largest entry decompressed into memory for a nested scan.
const MAX_INFLATE: u64 = 256 << 20;
/// Entries up to this size get their CRC checked (pickles always do).
const CRC_CHECK_MAX: u64 = 64 << 20;

/// One central-directory record.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) name: String,
    flags: u16,
    method: u16,
    crc: u32,
    csize: u64,
    usize: u64,
    local: u64,
    /// Unix file mode from the external attributes, when the entry was made on Unix.
    unix_mode: Option<u32>,
    /// Start of the entry's data, from its local header.
    data: u64,
}

fn u16_at(b: &[u8], i: usize) -> u16 {
    let mut a = [0u8; 2];
    if let Some(s) = b.get(i..i + 2) {
        a.copy_from_slice(s);
    }
    u16::from_le_bytes(a)
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    let mut a = [0u8; 4];
    if let Some(s) = b.get(i..i + 4) {
        a.copy_from_slice(s);
    }
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(i..i + 8) {
        a.copy_from_slice(s);
    }
    u64::from_le_bytes(a)
}

/// Reads the central directory and local headers, reporting structural findings.
pub(crate) fn read_directory<R: Read + Seek + ?Sized>(
    r: &mut R,
    len: u64,
    loc: &str,
    sink: &mut Sink,
) -> Result<Vec<Entry>, Stop> {
    let tail_len = len.min(65_557);
    let tail_start = len - tail_len;
    let mut tail = vec![0u8; usize::try_from(tail_len).unwrap_or(0)];
    let n = read_at(r, tail_start, &mut tail)?;
    tail.truncate(n);
    let mut eocd = None;
    let mut i = tail.len().saturating_sub(22);
    loop {
        if tail.get(i..i + 4) == Some(b"PK\x05\x06") {
            let clen = usize::from(u16_at(&tail, i + 20));
            if i + 22 + clen == tail.len() {
                eocd = Some(i);
                break;
            }
        }
        if i == 0 {
            break;
        }
        i -= 1;
    }
    let Some(e) = eocd else {
        return malformed(len, "zip without a valid end-of-central-directory record");
    };
    let eocd_pos = tail_start + e as u64;
    let mut count = u64::from(u16_at(&tail, e + 10));
    let mut cd_size = u64::from(u32_at(&tail, e + 12));
    let mut cd_off = u64::from(u32_at(&tail, e + 16));
    if count == 0xffff || cd_size == 0xffff_ffff || cd_off == 0xffff_ffff {
        // Zip64: the locator sits right before the EOCD and points at the zip64 EOCD record.
        let Some(lpos) = e.checked_sub(20) else {
            return malformed(eocd_pos, "zip64 sizes without a zip64 locator");
        };
        if tail.get(lpos..lpos + 4) != Some(b"PK\x06\x07") {
            return malformed(eocd_pos, "zip64 sizes without a zip64 locator");
        }
        let rec = u64_at(&tail, lpos + 8);
        let mut b = [0u8; 56];
        if read_at(r, rec, &mut b)? < 56 || b.get(..4) != Some(b"PK\x06\x06") {
            return malformed(rec, "bad zip64 end-of-central-directory record");
        }
        count = u64_at(&b, 32);
        cd_size = u64_at(&b, 40);
        cd_off = u64_at(&b, 48);
    }
    if cd_off.checked_add(cd_size).is_none_or(|end| end > eocd_pos) {
        return malformed(eocd_pos, "central directory lies outside the file");
    }
    if cd_size > MAX_CD || count > MAX_ENTRIES || count.saturating_mul(46) > cd_size {
        return malformed(
            eocd_pos,
            format!("implausible central directory: {count} entries in {cd_size} bytes"),
        );
    }
    let mut cd = vec![0u8; usize::try_from(cd_size).unwrap_or(0)];
    if read_at(r, cd_off, &mut cd)? < cd.len() {
        return malformed(cd_off, "truncated central directory");
    }
    let mut entries = Vec::new();
    let mut p = 0usize;
    for _ in 0..count {
        if cd.get(p..p + 4) != Some(b"PK\x01\x02") {
            return malformed(cd_off + p as u64, "bad central directory record signature");
        }
        let nlen = usize::from(u16_at(&cd, p + 28));
        let xlen = usize::from(u16_at(&cd, p + 30));
        let clen = usize::from(u16_at(&cd, p + 32));
        let Some(name_b) = cd.get(p + 46..p + 46 + nlen) else {
            return malformed(
                cd_off + p as u64,
                "central directory record overruns the directory",
            );
        };
        let extra = cd.get(p + 46 + nlen..p + 46 + nlen + xlen).unwrap_or(&[]);
        let mut ent = Entry {
            name: String::from_utf8_lossy(name_b).into_owned(),
            flags: u16_at(&cd, p + 8),
            unix_mode: (cd.get(p + 5) == Some(&3)).then(|| u32_at(&cd, p + 38) >> 16),
            method: u16_at(&cd, p + 10),
            crc: u32_at(&cd, p + 16),
            csize: u64::from(u32_at(&cd, p + 20)),
            usize: u64::from(u32_at(&cd, p + 24)),
            local: u64::from(u32_at(&cd, p + 42)),
            data: 0,
        };
        apply_zip64(&mut ent, extra);
        entries.push(ent);
        p += 46 + nlen + xlen + clen;
    }
    check_entries(r, &mut entries, cd_off, loc, sink)?;
    Ok(entries)
}

/// Replaces 0xFFFFFFFF sizes and offsets with their zip64 extra-field values.
fn apply_zip64(e: &mut Entry, mut extra: &[u8]) {
    while extra.len() >= 4 {
        let id = u16_at(extra, 0);
        let size = usize::from(u16_at(extra, 2));
        let body = extra.get(4..4 + size).unwrap_or(&[]);
        if id == 1 {
            let mut i = 0;
            if e.usize == 0xffff_ffff {
                e.usize = u64_at(body, i);
                i += 8;
            }
            if e.csize == 0xffff_ffff {
                e.csize = u64_at(body, i);
                i += 8;
            }
            if e.local == 0xffff_ffff {
                e.local = u64_at(body, i);
            }
        }
        extra = extra.get(4 + size..).unwrap_or(&[]);
    }
}

fn check_entries<R: Read + Seek + ?Sized>(
    r: &mut R,
    entries: &mut [Entry],
    cd_off: u64,
    loc: &str,
    sink: &mut Sink,
) -> Result<(), Stop> {
    let mut names = HashSet::new();
    let mut ranges: Vec<(u64, u64, usize)> = Vec::new();
    for (idx, e) in entries.iter_mut().enumerate() {
        let here = join(loc, &e.name);
        if !names.insert(e.name.clone()) {
            sink.add(
                Severity::High,
                &here,
                None,
                "duplicate entry name (readers disagree on which one counts)",
            );
        }
        if let Some(why) = bad_name(&e.name) {
            sink.add(
                Severity::High,
                &here,
                None,
                format!("entry name {why} (path traversal on extraction)"),
            );
        }
        if e.unix_mode.is_some_and(|m| m & 0o170000 == 0o120000) {
            sink.add(
                Severity::High,
                &here,
                None,
                "symbolic-link entry (extraction can write outside the target directory)",
            );
        }
        if e.flags & 0x0041 != 0 {
            sink.add(
                Severity::High,
                &here,
                None,
                format!("encryption flag bits set ({:#06x}) on unencrypted bytes; readers disagree (lenient ones read them anyway)", e.flags),
            );
        }
        let odd = e.flags & !(0x0001 | 0x0002 | 0x0004 | 0x0008 | 0x0040 | 0x0800);
        if odd != 0 {
            sink.add(
                Severity::Medium,
                &here,
                None,
                format!("unusual general-purpose flag bits {odd:#06x}"),
            );
        }
        let mut h = [0u8; 30];
        if read_at(r, e.local, &mut h)? < 30 || h.get(..4) != Some(b"PK\x03\x04") {
            sink.add(
                Severity::High,
                &here,
                Some(e.local),
                "central directory points at no local header",
            );
            continue;
        }
        let nlen = u64::from(u16_at(&h, 26));
        let xlen = u64::from(u16_at(&h, 28));
        let mut lname = vec![0u8; usize::from(u16_at(&h, 26))];
        read_at(r, e.local + 30, &mut lname)?;
        if lname != e.name.as_bytes() {
            sink.add(
                Severity::High,
                &here,
                Some(e.local),
                format!(
                    "local header names {:?} but the central directory names {:?} (readers see different files)",
                    String::from_utf8_lossy(&lname),
                    e.name
                ),
            );
        }
        let lflags = u16_at(&h, 6);
        let lmethod = u16_at(&h, 8);
        if lmethod != e.method || (lflags ^ e.flags) & 0x0041 != 0 {
            sink.add(
                Severity::High,
                &here,
                Some(e.local),
                "local header method or flags differ from the central directory",
            );
        }
        if lflags & 0x0008 == 0 {
            let (lcrc, lcs, lus) = (u32_at(&h, 14), u32_at(&h, 18), u32_at(&h, 22));
            let zip64 = lcs == 0xffff_ffff || lus == 0xffff_ffff;
            if lcrc != e.crc || (!zip64 && (u64::from(lcs) != e.csize || u64::from(lus) != e.usize))
            {
                sink.add(
                    Severity::High,
                    &here,
                    Some(e.local),
                    "local header CRC or sizes differ from the central directory",
                );
            }
        }
        e.data = e.local + 30 + nlen + xlen;
        let end = e.data.saturating_add(e.csize);
        if end > cd_off {
            sink.add(
                Severity::High,
                &here,
                Some(e.local),
                "entry data runs into the central directory",
            );
        }
        ranges.push((e.local, end, idx));
        let ratio = e.usize.checked_div(e.csize).unwrap_or(e.usize);
        // Real tensors and configs compress a few times at most; hundreds-fold only for
        // padding and bombs.
        if (e.usize > (16 << 20) && ratio > 200) || (e.usize > (4 << 30) && ratio > 50) {
            sink.add(
                Severity::High,
                &here,
                None,
                format!(
                    "compression ratio {ratio}:1 to {} bytes (zip bomb)",
                    e.usize
                ),
            );
        }
        if e.method == 0 && e.csize != e.usize {
            sink.add(
                Severity::High,
                &here,
                None,
                "stored entry whose sizes differ",
            );
        }
    }
    ranges.sort();
    for w in ranges.windows(2) {
        if let [a, b] = w {
            if b.0 < a.1 {
                let name = entries.get(b.2).map(|e| e.name.clone()).unwrap_or_default();
                sink.add(
                    Severity::High,
                    &join(loc, &name),
                    None,
                    "entry overlaps another entry's data (overlap bomb or polyglot)",
                );
            }
        }
    }
    Ok(())
}

/// Why an entry name is dangerous to extract, if it is.
fn bad_name(name: &str) -> Option<&'static str> {
    if name.contains('\0') {
        return Some("contains NUL");
    }
    if name.starts_with('/') || name.starts_with('\\') {
        return Some("is absolute");
    }
    let b = name.as_bytes();
    if b.len() >= 2 && b.get(1) == Some(&b':') && b.first().is_some_and(|c| c.is_ascii_alphabetic())
    {
        return Some("has a drive letter");
    }
    if name.split(['/', '\\']).any(|p| p == "..") {
        return Some("contains '..'");
    }
    None
}

/// A reader over an entry's uncompressed bytes, limited to its declared size (+1, so a stream
/// that inflates beyond its declaration is noticed).
pub(crate) fn open<'a, R: Read + Seek + ?Sized>(
    r: &'a mut R,
    e: &Entry,
) -> Result<Box<dyn Read + 'a>, Stop> {
    let raw = Window::new(r, e.data, e.csize);
    match e.method {
        0 => Ok(Box::new(raw)),
        8 => Ok(Box::new(
            flate2::read::DeflateDecoder::new(std::io::BufReader::new(raw))
                .take(e.usize.saturating_add(1)),
        )),
        m => malformed(e.data, format!("compression method {m} is not supported")),
    }
}

/// Wraps a reader and computes the CRC-32 and length of what passes through.
struct Crc<R> {
    inner: R,
    h: crc32fast::Hasher,
    n: u64,
}

impl<R: Read> Read for Crc<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let k = self.inner.read(buf)?;
        if let Some(s) = buf.get(..k) {
            self.h.update(s);
        }
        self.n += k as u64;
        Ok(k)
    }
}

fn check_crc(e: &Entry, crc: u32, n: u64, here: &str, sink: &mut Sink) {
    if n != e.usize {
        sink.add(
            Severity::High,
            here,
            None,
            format!("entry holds {n} bytes but declares {}", e.usize),
        );
    } else if crc != e.crc {
        sink.add(
            Severity::High,
            here,
            None,
            format!(
                "CRC mismatch (declared {:#010x}, actual {crc:#010x}); lenient loaders ignore it",
                e.crc
            ),
        );
    }
}

/// Scans a pickle entry in `ctx`, streaming, and checks its CRC.
fn scan_pickle_entry<R: Read + Seek + ?Sized>(
    r: &mut R,
    e: &Entry,
    ctx: Context,
    here: &str,
    sink: &mut Sink,
) -> Result<(), Stop> {
    let reader = match open(r, e) {
        Ok(x) => x,
        Err(Stop::Malformed { reason, .. }) => {
            sink.unscannable(format!("{here}: {reason}"));
            return Ok(());
        }
        Err(other) => return Err(other),
    };
    let mut c = Crc {
        inner: reader,
        h: crc32fast::Hasher::new(),
        n: 0,
    };
    let scanned = pickle::scan_stream(&mut c, ctx, here, sink, false);
    // Drain what the decoder did not need, for the CRC (pickle entries are small).
    let drained = match scanned {
        Ok(_) => std::io::copy(&mut c, &mut std::io::sink())
            .map(|_| ())
            .map_err(Stop::Io),
        Err(s) => Err(s),
    };
    if let Err(s) = drained {
        return corrupt(s, e, here, sink);
    }
    let n = c.n;
    check_crc(e, c.h.finalize(), n, here, sink);
    Ok(())
}

/// Turns a failure while reading a compressed entry into a finding: the decompressor reports bad
/// data as an I/O error, and for a deflated entry every such error is the data's fault. Stored
/// entries read the file directly, so their I/O errors stay errors.
fn corrupt(s: Stop, e: &Entry, here: &str, sink: &mut Sink) -> Result<(), Stop> {
    match s {
        Stop::Io(io) if e.method == 0 => Err(Stop::Io(io)),
        Stop::Io(io) => {
            sink.add(
                Severity::High,
                here,
                None,
                format!("corrupt compressed data: {io}"),
            );
            Ok(())
        }
        Stop::Malformed { reason, .. } => {
            sink.unscannable(format!("{here}: {reason}"));
            Ok(())
        }
    }
}

/// Scans any entry by content, as a nested file.
fn scan_nested<R: Read + Seek + ?Sized>(
    r: &mut R,
    e: &Entry,
    here: &str,
    depth: u32,
    sink: &mut Sink,
) -> Result<Option<Format>, Stop> {
    if e.method == 0 {
        if e.usize <= CRC_CHECK_MAX {
            let mut c = Crc {
                inner: Window::new(r, e.data, e.csize),
                h: crc32fast::Hasher::new(),
                n: 0,
            };
            std::io::copy(&mut c, &mut std::io::sink())?;
            let (crc, n) = (c.h.finalize(), c.n);
            check_crc(e, crc, n, here, sink);
        }
        let mut w = Window::new(r, e.data, e.csize);
        return scan_any(&mut w, e.csize, here, depth + 1, sink).map(Some);
    }
    // Each nesting level gets a quarter of the previous budget, so nested archives cannot
    // multiply the memory held at once.
    let budget = MAX_INFLATE >> (2 * depth.min(8));
    if e.usize > budget {
        sink.unscannable(format!(
            "{here}: compressed entry of {} bytes is too large to scan",
            e.usize
        ));
        return Ok(None);
    }
    let mut buf = Vec::new();
    let res = match open(r, e) {
        Ok(mut rd) => rd.read_to_end(&mut buf).map_err(Stop::Io),
        Err(s) => Err(s),
    };
    if let Err(err) = res {
        corrupt(err, e, here, sink)?;
        return Ok(None);
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&buf);
    check_crc(e, h.finalize(), buf.len() as u64, here, sink);
    let n = buf.len() as u64;
    scan_any(&mut Cursor::new(buf), n, here, depth + 1, sink).map(Some)
}

/// Scans a zip archive of any kind.
pub(crate) fn scan<R: Read + Seek + ?Sized>(
    r: &mut R,
    len: u64,
    loc: &str,
    depth: u32,
    sink: &mut Sink,
) -> Result<Format, Stop> {
    let entries = match read_directory(r, len, loc, sink) {
        Ok(e) => e,
        Err(Stop::Malformed { offset, reason }) => {
            sink.add(
                Severity::High,
                loc,
                Some(offset),
                format!("malformed zip: {reason}"),
            );
            return Ok(Format::Zip);
        }
        Err(e) => return Err(e),
    };
    let is_torch = entries
        .iter()
        .any(|e| e.name == "data.pkl" || e.name.ends_with("/data.pkl"));
    let is_script = entries
        .iter()
        .any(|e| e.name.ends_with("constants.pkl") || e.name.contains("/code/"));
    let is_keras = entries.iter().any(|e| e.name == "config.json")
        && entries.iter().any(|e| e.name == "metadata.json");
    let format = if is_script {
        Format::Torchscript
    } else if is_torch {
        Format::PytorchZip
    } else if is_keras {
        Format::KerasV3
    } else if !entries.is_empty() && entries.iter().all(|e| e.name.ends_with(".npy")) {
        Format::Npz
    } else {
        Format::Zip
    };
    if is_script {
        sink.add(
            Severity::Low,
            loc,
            None,
            "TorchScript archive: its code/ entries are TorchScript, compiled on load",
        );
    }
    let mut skipped = 0u64;
    for e in &entries {
        let here = join(loc, &e.name);
        if e.name.ends_with('/') && e.usize == 0 {
            continue;
        }
        if is_torch || is_script {
            if e.name.ends_with(".pkl") {
                scan_pickle_entry(r, e, Context::Torch, &here, sink)?;
                continue;
            }
            let in_data = e.name.split('/').any(|p| p == "data") && !e.name.ends_with(".pkl");
            if in_data {
                // Raw tensor storage: torch maps it as bytes and never interprets it.
                skipped += 1;
                continue;
            }
            if is_script && e.name.contains("/code/") {
                continue;
            }
        }
        if is_keras && e.name == "config.json" {
            let mut buf = Vec::new();
            if e.usize > keras::MAX_CONFIG {
                sink.unscannable(format!("{here}: config larger than the scanner reads"));
                continue;
            }
            match open(r, e) {
                Ok(mut rd) => {
                    if let Err(err) = rd.read_to_end(&mut buf) {
                        sink.add(
                            Severity::High,
                            &here,
                            None,
                            format!("unreadable entry: {err}"),
                        );
                        continue;
                    }
                }
                Err(Stop::Malformed { reason, .. }) => {
                    sink.unscannable(format!("{here}: {reason}"));
                    continue;
                }
                Err(other) => return Err(other),
            }
            keras::check_config_bytes(&buf, &here, sink);
            continue;
        }
        scan_nested(r, e, &here, depth, sink)?;
    }
    if skipped > 0 {
        sink.add(
            Severity::Info,
            loc,
            None,
            format!("{skipped} tensor storage entries not read (raw bytes)"),
        );
    }
    Ok(format)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a stored zip with the given (local name, central name, data) entries.
    pub(crate) fn build(entries: &[(&str, &str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut cd = Vec::new();
        for (lname, cname, data) in entries {
            let off = out.len() as u32;
            let crc = crc32fast::hash(data);
            out.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
            out.extend_from_slice(&crc.to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(data.len() as u32).to_le_bytes());
            out.extend_from_slice(&(lname.len() as u16).to_le_bytes());
            out.extend_from_slice(&0u16.to_le_bytes());
            out.extend_from_slice(lname.as_bytes());
            out.extend_from_slice(data);
            cd.extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
            cd.extend_from_slice(&crc.to_le_bytes());
            cd.extend_from_slice(&(data.len() as u32).to_le_bytes());
            cd.extend_from_slice(&(data.len() as u32).to_le_bytes());
            cd.extend_from_slice(&(cname.len() as u16).to_le_bytes());
            cd.extend_from_slice(&[0u8; 12]);
            cd.extend_from_slice(&off.to_le_bytes());
            cd.extend_from_slice(cname.as_bytes());
        }
        let cd_off = out.len() as u32;
        out.extend_from_slice(&cd);
        out.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00");
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        out.extend_from_slice(&(cd.len() as u32).to_le_bytes());
        out.extend_from_slice(&cd_off.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out
    }

    fn scan_zip(z: Vec<u8>) -> crate::ScanReport {
        let n = z.len() as u64;
        crate::scan(Cursor::new(z), n).expect("scan")
    }

    #[test]
    fn dotdot_entry_is_refused() {
        let rep = scan_zip(build(&[("../evil.txt", "../evil.txt", b"hi")]));
        assert!(!rep.is_clean());
        assert!(rep.findings.iter().any(|f| f.message.contains("..")));
    }

    #[test]
    fn name_disagreement_is_refused() {
        let rep = scan_zip(build(&[("a/readme.txt", "a/data.pkl", b"\x80\x02K\x01.")]));
        assert!(rep
            .findings
            .iter()
            .any(|f| f.message.contains("local header names")));
        assert!(!rep.is_clean());
    }

    #[test]
    fn clean_torch_like_zip_is_clean() {
        let rep = scan_zip(build(&[
            (
                "archive/data.pkl",
                "archive/data.pkl",
                b"\x80\x02ccollections\nOrderedDict\n)R.",
            ),
            ("archive/data/0", "archive/data/0", b"\x00\x00\x80\x3f"),
        ]));
        assert!(rep.is_clean(), "{:?}", rep.findings);
        assert_eq!(rep.format, Format::PytorchZip);
    }

    #[test]
    fn every_pickle_in_a_torch_zip_is_scanned() {
        let rep = scan_zip(build(&[
            ("archive/data.pkl", "archive/data.pkl", b"\x80\x02K\x01."),
            (
                "archive/extra.pkl",
                "archive/extra.pkl",
                b"\x80\x02cos\nsystem\n)R.",
            ),
        ]));
        assert!(!rep.is_clean());
    }
}
