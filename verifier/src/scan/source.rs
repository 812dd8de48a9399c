//! Compressed streams (joblib's `compress=` dumps are a zlib or gzip stream of the pickle). The
//! content is decompressed on the fly: a pickle is decoded as it streams, anything else is
//! inflated into memory up to a limit and scanned by content.

use std::io::{BufRead, BufReader, Cursor, Read, Seek};

use super::pickle::scan_stream;
use super::policy::Context;
use super::{scan_any, Format, Severity, Sink, Stop, Window};

/// Most bytes inflated into memory for a nested scan.
const MAX_INFLATE: u64 = 256 << 20;
/// Most bytes a streamed pickle may inflate to (guards CPU time against decompression bombs).
const MAX_STREAM: u64 = 64 << 30;

/// A compression wrapper recognised by its header.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Compression {
    Zlib,
    Gzip,
}

/// The compression of a stream starting with `head`, if any.
pub(crate) fn compression(head: &[u8]) -> Option<Compression> {
    match head {
        [0x1f, 0x8b, 0x08, ..] => Some(Compression::Gzip),
        [a, b, ..] if a & 0x0f == 8 && (u16::from(*a) << 8 | u16::from(*b)) % 31 == 0 => {
            Some(Compression::Zlib)
        }
        _ => None,
    }
}

fn decoder<'a, R: Read + Seek + ?Sized>(
    r: &'a mut R,
    len: u64,
    c: Compression,
) -> Box<dyn Read + 'a> {
    let w = BufReader::new(Window::new(r, 0, len));
    match c {
        Compression::Zlib => Box::new(flate2::bufread::ZlibDecoder::new(w)),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(w)),
    }
}

/// Scans a compressed stream; `None` if it does not actually decompress (then it is not one).
pub(crate) fn scan_compressed<R: Read + Seek + ?Sized>(
    r: &mut R,
    len: u64,
    c: Compression,
    loc: &str,
    depth: u32,
    sink: &mut Sink,
) -> Result<Option<Format>, Stop> {
    let first = {
        let mut d = BufReader::new(decoder(r, len, c));
        match d.fill_buf() {
            Ok(b) => b.first().copied(),
            Err(_) => return Ok(None),
        }
    };
    let Some(first) = first else { return Ok(None) };
    let inner = if loc.is_empty() {
        "(decompressed)".to_owned()
    } else {
        format!("{loc} (decompressed)")
    };
    if first == 0x80 {
        let d = decoder(r, len, c).take(MAX_STREAM);
        let f = match scan_stream(d, Context::Plain, &inner, sink, false) {
            Ok(f) => f,
            // The decompressor reports bad data as I/O errors; the input itself is a file or
            // memory already open, so any error here is the stream's fault.
            Err(Stop::Io(e)) => {
                sink.add(
                    Severity::High,
                    &inner,
                    None,
                    format!("corrupt compressed stream: {e}"),
                );
                Format::Compressed
            }
            Err(e) => return Err(e),
        };
        return Ok(Some(if f == Format::Joblib {
            Format::Joblib
        } else {
            Format::Compressed
        }));
    }
    let mut buf = Vec::new();
    let res = decoder(r, len, c)
        .take(MAX_INFLATE + 1)
        .read_to_end(&mut buf);
    if let Err(e) = res {
        sink.add(
            Severity::High,
            &inner,
            None,
            format!("corrupt compressed stream: {e}"),
        );
        return Ok(Some(Format::Compressed));
    }
    if buf.len() as u64 > MAX_INFLATE {
        sink.add(
            Severity::High,
            &inner,
            None,
            format!("decompresses to more than {MAX_INFLATE} bytes (bomb)"),
        );
        return Ok(Some(Format::Compressed));
    }
    let n = buf.len() as u64;
    scan_any(&mut Cursor::new(buf), n, &inner, depth + 1, sink)?;
    Ok(Some(Format::Compressed))
}
