//! Tar archives, including the ancient tar-based `torch.save` format (members `sys_info`,
//! `pickle`, `storages`, `tensors`, each a pickle stream; `storages` is the one loaded first).
//! Members are scanned by content in place, never extracted.

use std::io::{Read, Seek, SeekFrom};

use super::pickle::scan_stream;
use super::policy::Context;
use super::{join, read_at, scan_any, Format, Severity, Sink, Stop, Window};

const MAX_MEMBERS: usize = 1 << 20;
const TORCH_MEMBERS: &[&str] = &["sys_info", "pickle", "storages", "tensors"];

struct Member {
    name: String,
    kind: u8,
    start: u64,
    size: u64,
}

fn octal(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        // Base-256 (GNU) encoding for large sizes.
        let mut v: u64 = u64::from(field.first()? & 0x7f);
        for b in field.get(1..)? {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let s = std::str::from_utf8(field).ok()?;
    let s = s.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(s, 8).ok()
}

fn members<R: Read + Seek + ?Sized>(
    r: &mut R,
    len: u64,
    loc: &str,
    sink: &mut Sink,
) -> Result<Vec<Member>, Stop> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    let mut long_name: Option<String> = None;
    while pos + 512 <= len && out.len() < MAX_MEMBERS {
        let mut h = [0u8; 512];
        read_at(r, pos, &mut h)?;
        if h.iter().all(|b| *b == 0) {
            break;
        }
        let field = |a: usize, b: usize| h.get(a..b).unwrap_or(&[]);
        let cstr = |b: &[u8]| {
            String::from_utf8_lossy(b.split(|c| *c == 0).next().unwrap_or(&[])).into_owned()
        };
        let Some(size) = octal(field(124, 136)) else {
            sink.add(
                Severity::High,
                loc,
                Some(pos),
                "tar header with an unreadable size",
            );
            break;
        };
        let stored: u64 = h
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(*b)
                }
            })
            .sum();
        if octal(field(148, 156)) != Some(stored) {
            sink.add(
                Severity::Medium,
                loc,
                Some(pos),
                "tar header checksum mismatch",
            );
        }
        let kind = h.get(156).copied().unwrap_or(0);
        let mut name = cstr(field(0, 100));
        if field(257, 262) == b"ustar" {
            let prefix = cstr(field(345, 500));
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        if let Some(n) = long_name.take() {
            name = n;
        }
        let start = pos + 512;
        if start.saturating_add(size) > len {
            sink.add(
                Severity::High,
                loc,
                Some(pos),
                format!("tar member {name:?} runs past the end of the archive"),
            );
            break;
        }
        if kind == b'L' && size <= 4096 {
            let mut b = vec![0u8; usize::try_from(size).unwrap_or(0)];
            read_at(r, start, &mut b)?;
            long_name = Some(cstr(&b));
        } else {
            out.push(Member {
                name,
                kind,
                start,
                size,
            });
        }
        pos = start + size.div_ceil(512) * 512;
    }
    Ok(out)
}

/// Scans a tar archive.
pub(crate) fn scan<R: Read + Seek + ?Sized>(
    r: &mut R,
    len: u64,
    loc: &str,
    depth: u32,
    sink: &mut Sink,
) -> Result<Format, Stop> {
    let ms = members(r, len, loc, sink)?;
    let torch = ms.iter().any(|m| m.name == "storages")
        && ms.iter().all(|m| TORCH_MEMBERS.contains(&m.name.as_str()));
    for m in &ms {
        let here = join(loc, &m.name);
        if m.name.starts_with('/') || m.name.split('/').any(|p| p == "..") {
            sink.add(
                Severity::High,
                &here,
                Some(m.start),
                "member name escapes the extraction directory",
            );
        }
        match m.kind {
            b'0' | 0 | b'7' => {}
            b'1' | b'2' => {
                sink.add(
                    Severity::Medium,
                    &here,
                    Some(m.start),
                    "link member (can redirect extraction)",
                );
                continue;
            }
            _ => continue,
        }
        if torch {
            r.seek(SeekFrom::Start(m.start))?;
            let body = Window::new(&mut *r, m.start, m.size);
            scan_stream(body, Context::Torch, &here, sink, true)?;
        } else {
            let mut w = Window::new(&mut *r, m.start, m.size);
            scan_any(&mut w, m.size, &here, depth + 1, sink)?;
        }
    }
    Ok(if torch {
        Format::PytorchTar
    } else {
        Format::Tar
    })
}
