//! ONNX models (protobuf, no magic number). ONNX runs no Python, but tensors may keep their data
//! in external files named by a path; a path that leaves the model's directory reads arbitrary
//! files (CVE-2024-27318 class). The protobuf is walked along the fields that can hold tensors
//! (initializers, node attributes, subgraphs, functions); everything else is skipped by length.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};

use super::{Severity, Sink, Stop};

const MAX_DEPTH: u32 = 32;
const MAX_STRING: u64 = 1 << 16;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Msg {
    Model,
    Graph,
    Node,
    Attribute,
    Tensor,
    Sparse,
    Function,
    Entry,
}

/// Which message a length-delimited field holds, for the fields the walk follows.
fn child(m: Msg, field: u64) -> Option<Msg> {
    use Msg::*;
    Some(match (m, field) {
        (Model, 7) => Graph,
        (Model, 25) => Function,
        (Graph, 1) => Node,
        (Graph, 5) => Tensor,
        (Graph, 15) => Sparse,
        (Node, 5) => Attribute,
        (Attribute, 5 | 10) => Tensor,
        (Attribute, 6 | 11) => Graph,
        (Attribute, 22 | 23) => Sparse,
        (Function, 7) => Node,
        (Sparse, 1 | 2) => Tensor,
        (Tensor, 13) => Entry,
        _ => return None,
    })
}

struct Walker<R> {
    r: BufReader<R>,
    pos: u64,
    /// (offset, location) of every external-data path seen.
    locations: Vec<(u64, String)>,
    saw_ir_version: bool,
    saw_graph: bool,
}

struct Bad;

impl<R: Read + Seek> Walker<R> {
    fn byte(&mut self) -> Result<u8, Bad> {
        let b = self
            .r
            .fill_buf()
            .map_err(|_| Bad)?
            .first()
            .copied()
            .ok_or(Bad)?;
        self.r.consume(1);
        self.pos += 1;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, Bad> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte()?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Bad)
    }

    fn skip(&mut self, n: u64) -> Result<(), Bad> {
        let d = i64::try_from(n).map_err(|_| Bad)?;
        self.r.seek_relative(d).map_err(|_| Bad)?;
        self.pos += n;
        Ok(())
    }

    fn walk(
        &mut self,
        m: Msg,
        end: u64,
        depth: u32,
        key: &mut Option<String>,
        val: &mut Option<String>,
    ) -> Result<(), Bad> {
        if depth > MAX_DEPTH {
            return Err(Bad);
        }
        while self.pos < end {
            let tag = self.varint()?;
            let (field, wire) = (tag >> 3, tag & 7);
            if field == 0 {
                return Err(Bad);
            }
            match wire {
                0 => {
                    self.varint()?;
                    if m == Msg::Model && field == 1 {
                        self.saw_ir_version = true;
                    }
                }
                1 => self.skip(8)?,
                5 => self.skip(4)?,
                2 => {
                    let n = self.varint()?;
                    let sub_end = self.pos.checked_add(n).ok_or(Bad)?;
                    if sub_end > end {
                        return Err(Bad);
                    }
                    if m == Msg::Model && field == 7 {
                        self.saw_graph = true;
                    }
                    if m == Msg::Entry && (field == 1 || field == 2) && n <= MAX_STRING {
                        let mut b = vec![0u8; usize::try_from(n).map_err(|_| Bad)?];
                        self.r.read_exact(&mut b).map_err(|_| Bad)?;
                        self.pos += n;
                        let s = String::from_utf8_lossy(&b).into_owned();
                        if field == 1 {
                            *key = Some(s);
                        } else {
                            *val = Some(s);
                        }
                        continue;
                    }
                    match child(m, field) {
                        Some(Msg::Entry) => {
                            let at = self.pos;
                            let (mut k, mut v) = (None, None);
                            self.walk(Msg::Entry, sub_end, depth + 1, &mut k, &mut v)?;
                            if k.as_deref() == Some("location") {
                                if let Some(v) = v {
                                    self.locations.push((at, v));
                                }
                            }
                        }
                        Some(c) => self.walk(c, sub_end, depth + 1, &mut None, &mut None)?,
                        None => self.skip(n)?,
                    }
                    if self.pos != sub_end {
                        return Err(Bad);
                    }
                }
                _ => return Err(Bad),
            }
        }
        if self.pos != end {
            return Err(Bad);
        }
        Ok(())
    }
}

/// Why an external-data location is unsafe, if it is.
fn bad_location(p: &str) -> Option<&'static str> {
    if p.is_empty() {
        return Some("is empty");
    }
    if p.contains('\0') {
        return Some("contains NUL");
    }
    if p.starts_with('/') || p.starts_with('\\') || p.starts_with('~') {
        return Some("is absolute");
    }
    if p.contains(':') {
        return Some("has a drive letter or scheme");
    }
    if p.split(['/', '\\']).any(|c| c == "..") {
        return Some("climbs out with '..'");
    }
    None
}

/// Scans `r` as ONNX if it parses as an ONNX model; false if it does not.
pub(crate) fn scan<R: Read + Seek + ?Sized>(
    r: &mut R,
    len: u64,
    loc: &str,
    sink: &mut Sink,
) -> Result<bool, Stop> {
    r.seek(SeekFrom::Start(0))?;
    let mut w = Walker {
        r: BufReader::new(&mut *r),
        pos: 0,
        locations: Vec::new(),
        saw_ir_version: false,
        saw_graph: false,
    };
    let ok = w.walk(Msg::Model, len, 0, &mut None, &mut None).is_ok();
    if !ok || !w.saw_ir_version || !w.saw_graph {
        return Ok(false);
    }
    for (at, p) in &w.locations {
        match bad_location(p) {
            Some(why) => sink.add(
                Severity::High,
                loc,
                Some(*at),
                format!("external data location {p:?} {why}: it would read a file outside the model directory"),
            ),
            None => sink.add(Severity::Info, loc, Some(*at), format!("tensor data kept in external file {p:?}")),
        }
    }
    Ok(true)
}
