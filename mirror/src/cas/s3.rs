//! The S3-compatible backend (AWS S3, Garage, MinIO, …), through the `object_store` crate. Keys
//! are `{prefix}/sha256/ab/abcdef…`, the local layout under a prefix (`blobs` by default).
//!
//! S3 has no rename, so a put writes the final key straight from the verified local file:
//! - small files in one PUT; larger ones as a multipart upload, which becomes visible only when
//!   it is completed, and it is completed only after the bytes sent hashed to the digest (on a
//!   mismatch the upload is aborted and nothing is visible);
//! - never over an existing key: a HEAD first (a hit is [`Put::Existing`]), then the PUT is
//!   conditional (`If-None-Match: *`), so a store that honours it (AWS S3, MinIO, R2) refuses a
//!   racing second writer. Garage 2.5 ignores the header (measured: a second conditional PUT
//!   replaces the object), and a multipart completion cannot be made conditional through this
//!   client; there, a second writer that raced past the HEAD writes the same verified bytes under
//!   their own digest, which changes no byte a reader can see.
//!
//! The client is async; the [`super::Cas`] methods are blocking. The backend owns a small Tokio
//! runtime of its own: blocking calls hand their future to it and wait on a channel, which works
//! from any thread (no "runtime within a runtime" panic), and the HTTP connection pool lives on a
//! runtime that lasts as long as the store, whichever runtime the caller is on.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore, PutMode, PutOptions, PutPayload};
use verifier::Digest;

use super::cache::DiskCache;
use super::{blob_key, digest_of_key, ByteStream, CasError, Listed, Put, Source};

/// Files up to this size go in one PUT (read into memory whole); larger ones in parts of this size.
const PART: usize = 8 << 20;
/// Parts of one multipart upload in flight at once: memory per put stays under `(this + 1) × PART`.
const PARTS_IN_FLIGHT: usize = 2;
/// Response chunks buffered ahead of a reader.
const AHEAD: usize = 8;
/// Sizes of blobs known to be stored. Blobs are immutable and only this process's own delete
/// removes one, so a hit needs no HEAD: serving a hot blob costs one ranged GET.
const SIZE_CACHE: u64 = 100_000;

/// Where the bucket is and how to reach it.
#[derive(Debug, Clone)]
pub(crate) struct S3Settings {
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL (`http://127.0.0.1:3900`); None: AWS itself.
    pub endpoint: Option<String>,
    /// Region (Garage: its `s3_region`).
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Key prefix, without a trailing `/`.
    pub prefix: String,
    /// A local disk cache of hot blobs: its directory and size limit.
    pub cache: Option<(std::path::PathBuf, u64)>,
}

/// Blobs in a bucket.
#[derive(Clone)]
pub(crate) struct S3Cas {
    inner: Arc<Inner>,
}

struct Inner {
    client: Arc<AmazonS3>,
    prefix: String,
    sizes: moka::sync::Cache<Digest, u64>,
    cache: Option<Arc<DiskCache>>,
    /// Only `None` while being dropped.
    rt: Option<tokio::runtime::Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A runtime dropped from inside another runtime's task would panic; this never waits.
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

fn remote(op: &'static str, key: &Key) -> impl FnOnce(object_store::Error) -> CasError {
    let key = key.to_string();
    move |source| CasError::Remote {
        op,
        key,
        source: Box::new(source),
    }
}

impl S3Cas {
    /// Sets up the client (no request is made). The bucket must exist.
    pub(crate) fn open(s: &S3Settings) -> Result<S3Cas, CasError> {
        let mut b = AmazonS3Builder::new()
            .with_bucket_name(&s.bucket)
            .with_region(&s.region)
            .with_access_key_id(&s.access_key_id)
            .with_secret_access_key(&s.secret_access_key);
        if let Some(endpoint) = &s.endpoint {
            // A self-hosted store (Garage, MinIO) answers path-style requests on its endpoint;
            // plain HTTP is allowed only when the operator wrote an http:// endpoint.
            b = b
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        let client = b.build().map_err(|e| CasError::Config(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("airlock-s3")
            .enable_all()
            .build()
            .map_err(|e| CasError::Io {
                path: "object store runtime".into(),
                source: e,
            })?;
        let cache = match &s.cache {
            Some((dir, max)) => Some(Arc::new(DiskCache::open(dir, *max)?)),
            None => None,
        };
        Ok(S3Cas {
            inner: Arc::new(Inner {
                client: Arc::new(client),
                prefix: s.prefix.trim_end_matches('/').to_owned(),
                sizes: moka::sync::Cache::new(SIZE_CACHE),
                cache,
                rt: Some(rt),
            }),
        })
    }

    fn key(&self, digest: &Digest) -> Key {
        Key::from(format!("{}/{}", self.inner.prefix, blob_key(digest)))
    }

    fn rt(&self) -> &tokio::runtime::Runtime {
        // Set at construction, taken only in Drop.
        self.inner.rt.as_ref().expect("runtime present until drop")
    }

    /// Runs `fut` on the backend's runtime and waits for it (blocking the calling thread).
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = Result<T, CasError>> + Send + 'static,
    ) -> Result<T, CasError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.rt().spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(CasError::Io {
                path: "object store runtime".into(),
                source: std::io::Error::other("the object store task stopped"),
            })
        })
    }

    pub(super) fn put(&self, src: Source<'_>) -> Result<Put, CasError> {
        if self.size(&src.digest).is_ok() {
            return Ok(Put::Existing);
        }
        let key = self.key(&src.digest);
        let file = std::fs::File::open(src.path).map_err(CasError::io(src.path))?;
        let size = file.metadata().map_err(CasError::io(src.path))?.len();
        if size != src.size {
            return Err(CasError::SizeMismatch {
                digest: src.digest,
                expected: src.size,
                actual: size,
            });
        }
        let (client, digest, path) = (self.inner.client.clone(), src.digest, src.path.to_owned());
        let put = if size as usize <= PART {
            let bytes = std::fs::read(&path).map_err(CasError::io(&path))?;
            check(digest, verifier::Digest::of(&bytes))?;
            self.run(async move {
                let opts = PutOptions {
                    mode: PutMode::Create,
                    ..PutOptions::default()
                };
                match client.put_opts(&key, PutPayload::from(bytes), opts).await {
                    Ok(_) => Ok(Put::New { size }),
                    Err(object_store::Error::AlreadyExists { .. })
                    | Err(object_store::Error::Precondition { .. }) => Ok(Put::Existing),
                    Err(e) => Err(remote("put", &key)(e)),
                }
            })?
        } else {
            self.put_multipart(file, path, key, digest, size)?
        };
        self.inner.sizes.insert(digest, size);
        Ok(put)
    }

    /// Uploads a large file in parts, hashing as it reads; completes only if the hash matches.
    fn put_multipart(
        &self,
        mut file: std::fs::File,
        path: std::path::PathBuf,
        key: Key,
        digest: Digest,
        size: u64,
    ) -> Result<Put, CasError> {
        use std::io::Read;
        let client = self.inner.client.clone();
        let k = key.clone();
        let upload =
            self.run(async move { client.put_multipart(&k).await.map_err(remote("put", &k)) })?;
        let mut writer = Some(object_store::WriteMultipart::new_with_chunk_size(
            upload, PART,
        ));
        let mut hasher = verifier::Hasher::new(None);
        let mut sent = 0u64;
        // An aborted upload leaves nothing visible; a failed abort leaves parts the store's own
        // lifecycle rules clean up, never an object under the key.
        let abort = |this: &S3Cas, w: object_store::WriteMultipart| {
            let k = key.clone();
            if let Err(e) = this.run(async move { w.abort().await.map_err(remote("abort", &k)) }) {
                tracing::warn!(error = %e, "object store: aborting a refused upload failed");
            }
        };
        loop {
            let mut buf = vec![0u8; PART];
            let mut filled = 0;
            while filled < PART {
                match file.read(&mut buf[filled..]) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) => {
                        if let Some(w) = writer.take() {
                            abort(self, w);
                        }
                        return Err(CasError::io(&path)(e));
                    }
                }
            }
            if filled == 0 {
                break;
            }
            buf.truncate(filled);
            hasher.update(&buf);
            sent += filled as u64;
            let Some(mut w) = writer.take() else { break };
            let k = key.clone();
            // Wait until fewer than PARTS_IN_FLIGHT parts are uploading, then queue this one.
            let (w2, waited) = self.run(async move {
                let r = w.wait_for_capacity(PARTS_IN_FLIGHT).await;
                w.put(Bytes::from(buf));
                Ok((w, r.map_err(remote("put", &k))))
            })?;
            writer = Some(w2);
            if let Err(e) = waited {
                if let Some(w) = writer.take() {
                    abort(self, w);
                }
                return Err(e);
            }
        }
        let Some(w) = writer.take() else {
            return Err(CasError::Config("multipart upload lost".into()));
        };
        let actual = hasher.finish().sha256;
        if actual != digest || sent != size {
            abort(self, w);
            return Err(if actual != digest {
                CasError::DigestMismatch {
                    claimed: digest,
                    actual,
                }
            } else {
                CasError::SizeMismatch {
                    digest,
                    expected: size,
                    actual: sent,
                }
            });
        }
        self.run(async move { w.finish().await.map_err(remote("put", &key)) })?;
        Ok(Put::New { size })
    }

    pub(super) fn size(&self, digest: &Digest) -> Result<u64, CasError> {
        if let Some(size) = self.inner.sizes.get(digest) {
            return Ok(size);
        }
        let (client, key, d) = (self.inner.client.clone(), self.key(digest), *digest);
        let size = self.run(async move {
            match client.head(&key).await {
                Ok(meta) => Ok(meta.size),
                Err(object_store::Error::NotFound { .. }) => Err(CasError::NotFound { digest: d }),
                Err(e) => Err(remote("head", &key)(e)),
            }
        })?;
        self.inner.sizes.insert(*digest, size);
        Ok(size)
    }

    /// Streams `range` (already checked against the size) through a bounded channel, fed by a
    /// task on the backend's runtime that reads the ranged GET's body as the consumer takes it.
    pub(super) fn stream(&self, digest: Digest, range: Range<u64>) -> ByteStream {
        let rx = self.feed(digest, range);
        Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        }))
    }

    fn feed(
        &self,
        digest: Digest,
        range: Range<u64>,
    ) -> tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>> {
        feed(
            self.rt().handle(),
            self.inner.client.clone(),
            self.key(&digest),
            range,
        )
    }

    /// The local copy of a hot blob, if the cache has one.
    pub(super) fn cached(&self, digest: &Digest) -> Option<std::fs::File> {
        self.inner.cache.as_ref()?.get(digest)
    }

    /// Starts copying a blob of `size` bytes into the cache, in the background, unless it is
    /// there, being copied, or too large. The copy holds no reference to the store itself, so
    /// it never outlives (or delays) a shutdown.
    pub(super) fn warm(&self, digest: Digest, size: u64) {
        let Some(cache) = self.inner.cache.clone() else {
            return;
        };
        if !cache.claim(&digest, size) {
            return;
        }
        let rx = self.feed(digest, 0..size);
        self.rt().spawn_blocking(move || {
            cache.fill(
                digest,
                size,
                ChannelReader {
                    rx,
                    buf: Bytes::new(),
                },
            )
        });
    }
}

/// Forwards a ranged GET's body into a bounded channel, from a task on `rt`: memory stays at a few
/// chunks whatever the range, and a body cut short ends with an error, never quietly.
fn feed(
    rt: &tokio::runtime::Handle,
    client: Arc<AmazonS3>,
    key: Key,
    range: Range<u64>,
) -> tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(AHEAD);
    if range.is_empty() {
        return rx;
    }
    let want = range.end - range.start;
    rt.spawn(async move {
        let opts = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let mut body = match client.get_opts(&key, opts).await {
            Ok(r) => r.into_stream(),
            Err(e) => {
                let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                return;
            }
        };
        let mut got = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| std::io::Error::other(e.to_string()));
            if let Ok(c) = &chunk {
                got += c.len() as u64;
            }
            let failed = chunk.is_err();
            if tx.send(chunk).await.is_err() || failed {
                return;
            }
        }
        // A body cut short must fail the read, never end it quietly as if complete.
        if got != want {
            let _ = tx
                .send(Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)))
                .await;
        }
    });
    rx
}

impl S3Cas {
    pub(super) fn reader(
        &self,
        digest: Digest,
        from: u64,
    ) -> Result<Box<dyn std::io::Read + Send>, CasError> {
        let size = self.size(&digest)?;
        Ok(Box::new(ChannelReader {
            rx: self.feed(digest, from.min(size)..size),
            buf: Bytes::new(),
        }))
    }

    pub(super) fn delete(&self, digest: &Digest) -> Result<(), CasError> {
        self.inner.sizes.invalidate(digest);
        if let Some(cache) = &self.inner.cache {
            cache.remove(digest);
        }
        let (client, key) = (self.inner.client.clone(), self.key(digest));
        self.run(async move {
            match client.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(remote("delete", &key)(e)),
            }
        })
    }

    pub(super) fn delete_stray(&self, location: &str) -> Result<(), CasError> {
        if !location.starts_with(&format!("{}/", self.inner.prefix)) {
            return Err(CasError::Config(format!(
                "{location} is not under {}/",
                self.inner.prefix
            )));
        }
        let (client, key) = (self.inner.client.clone(), Key::from(location));
        self.run(async move { client.delete(&key).await.map_err(remote("delete", &key)) })
    }

    pub(super) fn list(&self) -> Result<Vec<Listed>, CasError> {
        let (client, prefix) = (
            self.inner.client.clone(),
            Key::from(self.inner.prefix.as_str()),
        );
        let strip = format!("{}/", self.inner.prefix);
        let mut out = self.run(async move {
            let mut listing = client.list(Some(&prefix));
            let mut out = Vec::new();
            while let Some(meta) = listing.next().await {
                let meta = meta.map_err(remote("list", &prefix))?;
                let location = meta.location.to_string();
                let digest = location.strip_prefix(&strip).and_then(digest_of_key);
                out.push(Listed {
                    digest,
                    location,
                    size: meta.size,
                    used: std::time::SystemTime::from(meta.last_modified),
                });
            }
            Ok(out)
        })?;
        out.sort_by(|a, b| a.location.cmp(&b.location));
        Ok(out)
    }
}

/// A digest comparison as a put's refusal.
fn check(claimed: Digest, actual: Digest) -> Result<(), CasError> {
    if claimed == actual {
        Ok(())
    } else {
        Err(CasError::DigestMismatch { claimed, actual })
    }
}

/// A blocking [`std::io::Read`] over a ranged GET's chunks (for hashing and small reads, on a
/// thread that may block).
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
    buf: Bytes,
}

impl std::io::Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.buf.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.buf = b,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len());
        out[..n].copy_from_slice(&self.buf.split_to(n));
        Ok(n)
    }
}
