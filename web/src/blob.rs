//! Serving promoted blobs: `Range` parsing and a streaming body that reads the file on a blocking
//! thread in large chunks, a few chunks ahead of the socket, so memory per stream stays bounded.

use bytes::Bytes;
use std::fs::File;

/// Bytes read per chunk.
const CHUNK: usize = 512 * 1024;
/// Chunks read ahead of the socket per stream.
const AHEAD: usize = 2;

/// Files up to this size are read whole in the blocking hop that opens them and answered from
/// memory: for a small file, mapping it, a streaming task and a channel cost far more than the
/// bytes (mmap/munmap shoot down TLBs on every core).
pub const SMALL: u64 = 64 * 1024;

/// The body for a GET of `rec`: small local files read whole, everything else streamed.
pub async fn open(
    mirror: &mirror::Mirror,
    rec: &mirror::FileRecord,
) -> Result<Body, mirror::MirrorError> {
    if rec.size <= SMALL {
        return Ok(match mirror.open_small_blob(rec).await? {
            mirror::SmallBlob::Whole(bytes) => Body::Small(bytes.into()),
            mirror::SmallBlob::Opened(blob) => Body::Blob(blob),
        });
    }
    Ok(Body::Blob(mirror.open_blob(rec).await?))
}

/// What a blob answer carries.
pub enum Body {
    /// Nothing (a HEAD): only the headers and the declared length.
    Head,
    /// The blob, streamed: a local file memory-mapped, an object-store blob by ranged reads.
    Blob(mirror::Blob),
    /// The whole blob, read already (at most [`SMALL`] bytes).
    Small(Bytes),
}

/// A parsed single `Range`, resolved against the file size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAsk {
    /// No usable range: serve everything (200).
    Full,
    /// Serve `start..start+len` (206).
    Part {
        /// First byte.
        start: u64,
        /// Length.
        len: u64,
    },
    /// The range lies outside the file (416).
    Unsatisfiable,
}

/// Parses a `Range` header value for a file of `size` bytes. Multi-range and malformed values are
/// ignored (RFC 9110 allows serving the whole representation instead).
pub fn parse_range(value: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Full;
    };
    if spec.contains(',') {
        return RangeAsk::Full;
    }
    let Some((a, b)) = spec.split_once('-') else {
        return RangeAsk::Full;
    };
    let (a, b) = (a.trim(), b.trim());
    let (start, end) = if a.is_empty() {
        // Suffix range: the last `b` bytes.
        let Ok(n) = b.parse::<u64>() else {
            return RangeAsk::Full;
        };
        if n == 0 {
            return RangeAsk::Unsatisfiable;
        }
        (size.saturating_sub(n), size.saturating_sub(1))
    } else {
        let Ok(start) = a.parse::<u64>() else {
            return RangeAsk::Full;
        };
        let end = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(e) if e >= start => e.min(size.saturating_sub(1)),
                _ => return RangeAsk::Full,
            }
        };
        (start, end)
    };
    if size == 0 || start >= size {
        return RangeAsk::Unsatisfiable;
    }
    RangeAsk::Part {
        start,
        len: end - start + 1,
    }
}

/// Finishes `resp` as the answer to a GET (`blob` given) or HEAD (`blob` is `None`) for a blob of
/// `size` bytes, honouring `range`: 200 with everything, 206 with `Content-Range`, or `Err` for a
/// range outside the file (the caller answers 416 in its protocol's error form). A local file is
/// streamed memory-mapped; an object-store blob by a ranged read of just the bytes asked for.
pub fn respond(
    mut resp: actix_web::HttpResponseBuilder,
    range: Option<&str>,
    size: u64,
    body: Body,
) -> Result<actix_web::HttpResponse, RangeAsk> {
    let (start, len) = match parse_range(range, size) {
        RangeAsk::Full => (0, size),
        RangeAsk::Part { start, len } => {
            resp.status(actix_web::http::StatusCode::PARTIAL_CONTENT);
            resp.insert_header((
                actix_web::http::header::CONTENT_RANGE,
                format!("bytes {}-{}/{}", start, start + len - 1, size),
            ));
            (start, len)
        }
        RangeAsk::Unsatisfiable => return Err(RangeAsk::Unsatisfiable),
    };
    resp.insert_header((actix_web::http::header::ACCEPT_RANGES, "bytes"));
    Ok(match body {
        Body::Blob(mirror::Blob::File(file)) => {
            resp.no_chunking(len);
            resp.streaming(stream(file, start, len))
        }
        Body::Blob(mirror::Blob::Remote(remote)) => {
            resp.no_chunking(len);
            resp.streaming(remote.stream(start, len))
        }
        // The whole file was read and is exactly `size` bytes, so the range lies inside it.
        Body::Small(bytes) if bytes.len() as u64 == size => {
            resp.body(bytes.slice(start as usize..(start + len) as usize))
        }
        // A read that does not match the record (the caller checks; never serve other bytes).
        Body::Small(_) => return Err(RangeAsk::Unsatisfiable),
        // actix writes a HEAD's Content-Length from the body's declared size and never sends the
        // body itself, so declare the real size over an empty stream.
        Body::Head => resp.body(actix_web::body::SizedStream::new(
            len,
            futures_util::stream::empty::<Result<Bytes, std::io::Error>>(),
        )),
    })
}

/// One chunk of a blob, memory-mapped, handed to the socket writer without a copy in between.
struct MapSlice {
    map: memmap2::Mmap,
    /// Where the chunk starts inside the (page-aligned) mapping.
    skip: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        // `skip` is within the mapping by construction (it is less than one page).
        self.map.get(self.skip..).unwrap_or(&[])
    }
}

/// Page size that mapping offsets are aligned to (4 KiB on the platforms Airlock runs on; a
/// larger real page size would make `mmap` fail loudly, not serve wrong bytes).
const PAGE: u64 = 4096;

/// Maps `len` bytes of `file` at `pos`, faulting the pages in now (on the calling blocking
/// thread) so the event loop that copies them into the socket never waits for the disk.
fn map_chunk(file: &File, pos: u64, len: usize) -> std::io::Result<Bytes> {
    let aligned = pos - pos % PAGE;
    let skip = (pos - aligned) as usize;
    // SAFETY: blobs are immutable. A blob file is written once in quarantine, renamed into place
    // after verification and never modified or truncated afterwards (content addressing: new
    // content is a new file); the caller checked the range lies within the file. Deleting the
    // file does not affect a live mapping.
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(aligned)
            .len(skip + len)
            .populate()
            .map(file)?
    };
    Ok(Bytes::from_owner(MapSlice { map, skip }))
}

/// Streams `len` bytes of `file` from `start`, one memory-mapped chunk at a time: the bytes are
/// copied once (into the socket buffer) instead of twice (a read into a buffer, then the socket
/// buffer), and only the chunks in flight are mapped, so memory stays bounded per stream. The
/// mapping happens on a blocking thread that stays at most [`AHEAD`] chunks ahead and stops when
/// the client goes away (the channel closes).
pub fn stream(
    file: File,
    start: u64,
    len: u64,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(AHEAD);
    tokio::task::spawn_blocking(move || {
        let end = start + len;
        // Touching a mapped page past the end of the file would crash the process (SIGBUS), so
        // the range is checked against the real size first.
        match file.metadata() {
            Ok(m) if m.len() >= end => {}
            Ok(_) => {
                let _ =
                    tx.blocking_send(Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)));
                return;
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        }
        let mut pos = start;
        while pos < end {
            let n = CHUNK.min((end - pos) as usize);
            let chunk = map_chunk(&file, pos, n);
            let failed = chunk.is_err();
            if tx.blocking_send(chunk).is_err() || failed {
                return;
            }
            pos += n as u64;
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeAsk::Full);
        assert_eq!(
            parse_range(Some("bytes=0-"), 10),
            RangeAsk::Part { start: 0, len: 10 }
        );
        assert_eq!(
            parse_range(Some("bytes=2-4"), 10),
            RangeAsk::Part { start: 2, len: 3 }
        );
        assert_eq!(
            parse_range(Some("bytes=2-400"), 10),
            RangeAsk::Part { start: 2, len: 8 }
        );
        assert_eq!(
            parse_range(Some("bytes=-3"), 10),
            RangeAsk::Part { start: 7, len: 3 }
        );
        assert_eq!(
            parse_range(Some("bytes=-30"), 10),
            RangeAsk::Part { start: 0, len: 10 }
        );
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-"), 0), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=5-2"), 10), RangeAsk::Full);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeAsk::Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeAsk::Full);
        assert_eq!(parse_range(Some("bytes=x-1"), 10), RangeAsk::Full);
    }
}
