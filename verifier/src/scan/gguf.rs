//! GGUF (llama.cpp). The header's counts and string lengths are checked against the file size
//! before anything is read for them (the parser overflows of CVE-2025-53630 start there), tensor
//! ranges must lie inside the data section, and chat templates go through the Jinja checks.
//! Tensor data is never read.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use super::jinja;
use super::pickle::Input;
use super::{malformed, Severity, Sink, Stop};

/// Keys longer than this are malformed (real keys are dotted names of a few dozen bytes).
const MAX_KEY: u64 = 1 << 16;
/// Chat templates longer than this are not kept for analysis.
const MAX_TEMPLATE: u64 = 1 << 20;
/// GGML_MAX_DIMS: llama.cpp refuses tensors with more dimensions.
const MAX_DIMS: u32 = 4;

/// (elements per block, bytes per block) of a ggml tensor type.
fn ggml_block(t: u32) -> Option<(u64, u64)> {
    Some(match t {
        0 => (1, 4),
        1 => (1, 2),
        2 => (32, 18),
        3 => (32, 20),
        6 => (32, 22),
        7 => (32, 24),
        8 => (32, 34),
        9 => (32, 36),
        10 => (256, 84),
        11 => (256, 110),
        12 => (256, 144),
        13 => (256, 176),
        14 => (256, 210),
        15 => (256, 292),
        16 => (256, 66),
        17 => (256, 74),
        18 => (256, 98),
        19 => (256, 50),
        20 => (32, 18),
        21 => (256, 110),
        22 => (256, 82),
        23 => (256, 136),
        24 => (1, 1),
        25 => (1, 2),
        26 => (1, 4),
        27 => (1, 8),
        28 => (1, 8),
        29 => (256, 56),
        30 => (1, 2),
        34 => (256, 54),
        35 => (256, 66),
        39 => (32, 17),
        _ => return None,
    })
}

/// Smallest encoded size of a value of metadata type `t`, for count sanity checks.
fn min_size(t: u32, v1: bool) -> Option<u64> {
    Some(match t {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        8 => {
            if v1 {
                4
            } else {
                8
            }
        }
        9 => 12,
        _ => return None,
    })
}

struct Gguf<'a, R> {
    inp: Input<R>,
    len: u64,
    v1: bool,
    loc: &'a str,
}

impl<R: BufRead> Gguf<'_, R> {
    fn u32(&mut self) -> Result<u32, Stop> {
        let mut b = [0u8; 4];
        self.read(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, Stop> {
        let mut b = [0u8; 8];
        self.read(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn read(&mut self, b: &mut [u8]) -> Result<(), Stop> {
        let at = self.inp.pos();
        self.inp
            .exact(b)
            .or_else(|_| malformed(at, "truncated GGUF header"))
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.inp.pos())
    }

    fn count(&mut self) -> Result<u64, Stop> {
        if self.v1 {
            Ok(u64::from(self.u32()?))
        } else {
            self.u64()
        }
    }

    /// Reads a string's length and either its bytes (if `keep` allows) or skips them.
    fn string(&mut self, keep: u64) -> Result<Option<String>, Stop> {
        let at = self.inp.pos();
        let n = self.count()?;
        if n > self.remaining() {
            return malformed(
                at,
                format!(
                    "string length {n} exceeds the {} bytes left",
                    self.remaining()
                ),
            );
        }
        if n > keep {
            self.inp.skip(n)?;
            return Ok(None);
        }
        let mut b = vec![0u8; usize::try_from(n).unwrap_or(0)];
        self.read(&mut b)?;
        Ok(Some(String::from_utf8_lossy(&b).into_owned()))
    }

    /// Reads (mostly skips) one metadata value of type `t`; returns it if it is a kept string or
    /// an integer.
    fn value(&mut self, t: u32, keep: u64, depth: u32) -> Result<Val, Stop> {
        let at = self.inp.pos();
        Ok(match t {
            0 | 1 | 7 => {
                let mut b = [0u8; 1];
                self.read(&mut b)?;
                Val::Int(u64::from(b[0]))
            }
            2 | 3 => {
                let mut b = [0u8; 2];
                self.read(&mut b)?;
                Val::Int(u64::from(u16::from_le_bytes(b)))
            }
            4 | 5 => Val::Int(u64::from(self.u32()?)),
            6 => {
                self.u32()?;
                Val::Other
            }
            10 | 11 => Val::Int(self.u64()?),
            12 => {
                self.u64()?;
                Val::Other
            }
            8 => match self.string(keep)? {
                Some(s) => Val::Str(s),
                None => Val::Other,
            },
            9 => {
                if depth > 2 {
                    return malformed(at, "arrays nested too deeply");
                }
                let et = self.u32()?;
                let n = self.count()?;
                let Some(min) = min_size(et, self.v1) else {
                    return malformed(at, format!("array of unknown element type {et}"));
                };
                if n.saturating_mul(min) > self.remaining() {
                    return malformed(
                        at,
                        format!(
                            "array of {n} elements cannot fit in the {} bytes left",
                            self.remaining()
                        ),
                    );
                }
                match et {
                    8 | 9 => {
                        for _ in 0..n {
                            self.value(et, 0, depth + 1)?;
                        }
                    }
                    _ => self.inp.skip(n * min)?,
                }
                Val::Other
            }
            other => return malformed(at, format!("unknown metadata value type {other}")),
        })
    }
}

enum Val {
    Int(u64),
    Str(String),
    Other,
}

/// Scans a GGUF file.
pub(crate) fn scan<R: Read + Seek + ?Sized>(
    r: &mut R,
    len: u64,
    loc: &str,
    sink: &mut Sink,
) -> Result<(), Stop> {
    r.seek(SeekFrom::Start(0))?;
    let inp = Input::new(BufReader::with_capacity(64 * 1024, &mut *r), 0);
    let mut g = Gguf {
        inp,
        len,
        v1: false,
        loc,
    };
    match run(&mut g, sink) {
        Ok(()) => Ok(()),
        Err(Stop::Malformed { offset, reason }) => {
            sink.add(
                Severity::High,
                g.loc,
                Some(offset),
                format!("malformed GGUF: {reason}"),
            );
            Ok(())
        }
        Err(e) => Err(e),
    }
}

fn run<R: BufRead>(g: &mut Gguf<'_, R>, sink: &mut Sink) -> Result<(), Stop> {
    let loc = g.loc;
    let mut magic = [0u8; 4];
    g.read(&mut magic)?;
    let version = g.u32()?;
    if !(1..=3).contains(&version) {
        return malformed(4, format!("unsupported GGUF version {version}"));
    }
    g.v1 = version == 1;
    let tensors = g.count()?;
    let kvs = g.count()?;
    if tensors.saturating_mul(25) > g.remaining() {
        return malformed(
            8,
            format!(
                "tensor count {tensors} cannot fit in a {len}-byte file",
                len = g.len
            ),
        );
    }
    if kvs.saturating_mul(13) > g.remaining() {
        return malformed(
            16,
            format!(
                "metadata count {kvs} cannot fit in a {len}-byte file",
                len = g.len
            ),
        );
    }
    let mut alignment = 32u64;
    let mut keys = std::collections::HashSet::new();
    for _ in 0..kvs {
        let at = g.inp.pos();
        let Some(key) = g.string(MAX_KEY)? else {
            return malformed(at, "metadata key longer than 64 KiB");
        };
        if !keys.insert(key.clone()) {
            sink.add(
                Severity::High,
                loc,
                Some(at),
                format!("duplicate metadata key {key:?} (readers disagree on its value)"),
            );
        }
        let t = g.u32()?;
        let template_key = key.starts_with("tokenizer.chat_template");
        let keep = if template_key { MAX_TEMPLATE } else { 0 };
        let val = g.value(t, keep, 0)?;
        if template_key {
            match (&val, t) {
                (Val::Str(s), _) => jinja::check(s, loc, &key, sink),
                (_, 8) => sink.add(
                    Severity::Medium,
                    loc,
                    Some(at),
                    format!("{key} is longer than the scanner reads"),
                ),
                _ => {}
            }
        }
        if key == "general.alignment" {
            match val {
                Val::Int(a) if a > 0 && a.is_power_of_two() && a <= 1 << 16 => alignment = a,
                _ => sink.add(
                    Severity::High,
                    loc,
                    Some(at),
                    "general.alignment is not a small power of two",
                ),
            }
        }
    }
    let mut ranges: Vec<(u64, u64, String)> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for _ in 0..tensors {
        let at = g.inp.pos();
        let name = g.string(MAX_KEY)?.unwrap_or_default();
        let dims = g.u32()?;
        if dims > MAX_DIMS {
            return malformed(at, format!("tensor {name:?} has {dims} dimensions"));
        }
        let mut count: Option<u64> = Some(1);
        for _ in 0..dims {
            let d = g.count()?;
            count = count.and_then(|c| c.checked_mul(d));
        }
        let ty = g.u32()?;
        let off = g.u64()?;
        let size = match (ggml_block(ty), count) {
            (Some((per, bytes)), Some(c)) => {
                if c % per != 0 {
                    sink.add(
                        Severity::Medium,
                        loc,
                        Some(at),
                        format!("tensor {name:?} is not a whole number of blocks"),
                    );
                }
                c.div_ceil(per).checked_mul(bytes)
            }
            (None, _) => {
                sink.add(
                    Severity::Medium,
                    loc,
                    Some(at),
                    format!("tensor {name:?} has unknown ggml type {ty}"),
                );
                Some(0)
            }
            (_, None) => None,
        };
        let Some(size) = size else {
            return malformed(at, format!("tensor {name:?} size overflows"));
        };
        if off % alignment != 0 {
            sink.add(
                Severity::Medium,
                loc,
                Some(at),
                format!("tensor {name:?} offset {off} is not aligned"),
            );
        }
        if !names.insert(name.clone()) {
            sink.add(
                Severity::High,
                loc,
                Some(at),
                format!("duplicate tensor name {name:?}"),
            );
        }
        ranges.push((off, off.saturating_add(size), name));
    }
    let pos = g.inp.pos();
    let data_start = pos.div_ceil(alignment).saturating_mul(alignment);
    let data_len = g.len.saturating_sub(data_start);
    ranges.sort();
    let mut prev_end = 0u64;
    for (b, e, name) in &ranges {
        if *e > data_len {
            sink.add(
                Severity::High,
                loc,
                Some(data_start.saturating_add(*b)),
                format!("tensor {name:?} data {b}..{e} lies beyond the end of the file"),
            );
        }
        if *b < prev_end {
            sink.add(
                Severity::High,
                loc,
                Some(data_start.saturating_add(*b)),
                format!("tensor {name:?} overlaps another"),
            );
        }
        prev_end = prev_end.max(*e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn gguf(kv: &[(&str, &str)], n_kv_override: Option<u64>) -> Vec<u8> {
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&n_kv_override.unwrap_or(kv.len() as u64).to_le_bytes());
        for (k, v) in kv {
            b.extend_from_slice(&(k.len() as u64).to_le_bytes());
            b.extend_from_slice(k.as_bytes());
            b.extend_from_slice(&8u32.to_le_bytes());
            b.extend_from_slice(&(v.len() as u64).to_le_bytes());
            b.extend_from_slice(v.as_bytes());
        }
        b
    }

    fn worst(b: Vec<u8>) -> Option<Severity> {
        let mut s = Sink::default();
        let n = b.len() as u64;
        scan(&mut Cursor::new(b), n, "", &mut s).expect("scan");
        s.findings.iter().map(|f| f.severity).max()
    }

    #[test]
    fn clean_and_ssti() {
        assert_eq!(
            worst(gguf(&[("general.architecture", "llama")], None)),
            None
        );
        let t = "{{ ().__class__.__base__.__subclasses__() }}";
        assert_eq!(
            worst(gguf(&[("tokenizer.chat_template", t)], None)),
            Some(Severity::Critical)
        );
    }

    #[test]
    fn huge_counts_and_lengths_are_malformed() {
        assert_eq!(worst(gguf(&[], Some(u64::MAX / 2))), Some(Severity::High));
        let mut b = gguf(&[], Some(1));
        b.extend_from_slice(&(1u64 << 60).to_le_bytes());
        b.extend_from_slice(b"abc");
        assert_eq!(worst(b), Some(Severity::High));
    }
}
