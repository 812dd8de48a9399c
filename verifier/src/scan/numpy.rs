//! NumPy `.npy` arrays. The header is a Python dict literal; an array whose dtype holds objects
//! (`|O`, or a structured dtype with an object field) is stored as a pickle, which is decoded.
//! Other arrays are raw bytes whose size must match the header.

use std::io::{Read, Seek, SeekFrom};

use super::pickle::{itemsize, scan_stream};
use super::policy::Context;
use super::{read_at, Format, Severity, Sink, Stop};

/// Longest header accepted (numpy itself refuses headers over 10 000 bytes by default).
const MAX_HEADER: u64 = 1 << 20;

/// The parts of an `.npy` header the scanner needs.
struct Header {
    descr_tokens: Vec<String>,
    structured: bool,
    shape: Option<Vec<u64>>,
    data_start: u64,
}

fn parse_header<R: Read + Seek + ?Sized>(
    r: &mut R,
    len: u64,
) -> Result<Result<Header, String>, Stop> {
    let mut pre = [0u8; 12];
    let n = read_at(r, 0, &mut pre)?;
    if n < 10 {
        return Ok(Err("truncated .npy preamble".into()));
    }
    let major = pre[6];
    let (hlen, start) = match major {
        1 => (u64::from(u16::from_le_bytes([pre[8], pre[9]])), 10u64),
        2 | 3 => (
            u64::from(u32::from_le_bytes([pre[8], pre[9], pre[10], pre[11]])),
            12u64,
        ),
        v => return Ok(Err(format!("unsupported .npy version {v}"))),
    };
    if hlen > MAX_HEADER || start + hlen > len {
        return Ok(Err(format!("header length {hlen} is out of bounds")));
    }
    let mut h = vec![0u8; usize::try_from(hlen).unwrap_or(0)];
    read_at(r, start, &mut h)?;
    let Ok(text) = String::from_utf8(h) else {
        return Ok(Err("header is not text".into()));
    };
    let Some(dpos) = text.find("'descr'") else {
        return Ok(Err("header without 'descr'".into()));
    };
    let after = text.get(dpos + 7..).unwrap_or("");
    let after = after.trim_start().trim_start_matches(':').trim_start();
    let structured = after.starts_with('[');
    // The descr value ends where the next top-level key starts.
    let end = ["'fortran_order'", "'shape'"]
        .iter()
        .filter_map(|k| after.find(k))
        .min()
        .unwrap_or(after.len());
    let descr = after.get(..end).unwrap_or("");
    let descr_tokens = quoted(descr);
    let shape = text.find("'shape'").and_then(|p| {
        let s = text.get(p + 7..)?;
        let open = s.find('(')?;
        let close = s.find(')')?;
        let inner = s.get(open + 1..close)?;
        inner
            .split(',')
            .map(str::trim)
            .filter(|x| !x.is_empty())
            .map(|x| x.trim_end_matches('L').parse::<u64>().ok())
            .collect::<Option<Vec<_>>>()
    });
    Ok(Ok(Header {
        descr_tokens,
        structured,
        shape,
        data_start: start + hlen,
    }))
}

/// Every single-quoted string in `s`.
fn quoted(s: &str) -> Vec<String> {
    s.split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn is_object(t: &str) -> bool {
    let t = t.trim_start_matches(['<', '>', '|', '=']);
    t == "O"
        || (t.starts_with('O')
            && t.get(1..)
                .is_some_and(|r| r.chars().all(|c| c.is_ascii_digit())))
}

/// Scans an `.npy` file.
pub(crate) fn scan_npy<R: Read + Seek + ?Sized>(
    r: &mut R,
    len: u64,
    loc: &str,
    _depth: u32,
    sink: &mut Sink,
) -> Result<Format, Stop> {
    let h = match parse_header(r, len)? {
        Ok(h) => h,
        Err(why) => {
            sink.add(
                Severity::High,
                loc,
                Some(0),
                format!("malformed .npy: {why}"),
            );
            return Ok(Format::Npy);
        }
    };
    // In a structured dtype the quoted tokens alternate field name, type; only types count.
    // Structured dtypes nest (name, type) pairs; any quoted object type code anywhere in the
    // descr means the loader goes through pickle.
    let object = if h.structured {
        h.descr_tokens.iter().any(|t| is_object(t))
    } else {
        h.descr_tokens.first().is_some_and(|t| is_object(t))
    };
    if object {
        sink.add(
            Severity::Low,
            loc,
            Some(h.data_start),
            "object dtype: the array data is a pickle (np.load needs allow_pickle=True)",
        );
        r.seek(SeekFrom::Start(h.data_start))?;
        let body = (&mut *r).take(len - h.data_start);
        scan_stream(body, Context::Plain, loc, sink, false)?;
        return Ok(Format::Npy);
    }
    let item = if h.structured {
        None
    } else {
        h.descr_tokens.first().and_then(|t| itemsize(t))
    };
    let count = h
        .shape
        .as_ref()
        .and_then(|s| s.iter().try_fold(1u64, |a, d| a.checked_mul(*d)));
    match (item, count) {
        (Some(i), Some(c)) => {
            let want = c.checked_mul(i);
            let have = len - h.data_start;
            match want {
                Some(w) if w == have => {}
                Some(w) if w < have => sink.add(
                    Severity::Medium,
                    loc,
                    Some(h.data_start + w),
                    format!("{} bytes after the array data", have - w),
                ),
                _ => sink.add(
                    Severity::Medium,
                    loc,
                    Some(h.data_start),
                    "array data shorter than its header declares",
                ),
            }
        }
        _ => sink.add(
            Severity::Info,
            loc,
            None,
            "array size not checked (structured or unusual dtype)",
        ),
    }
    Ok(Format::Npy)
}
