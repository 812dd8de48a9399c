//! Content digests: the sha256 that names every blob, and the git blob sha1 that the Hub uses as
//! the ETag of small (non-LFS) files.

use sha1::Digest as _;
use std::fmt;
use std::str::FromStr;

/// A sha256 digest. Parsed once, compared as bytes, printed as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest([u8; 32]);

/// Why a string is not a digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not 64 lowercase or uppercase hex characters (after an optional `sha256:` prefix).
    #[error("not a sha256 digest: expected 64 hex characters")]
    BadHex,
    /// A `xxx:` prefix other than `sha256:`.
    #[error("unsupported digest algorithm (only sha256 is accepted)")]
    Algorithm,
    /// Not 40 hex characters.
    #[error("not a git object id: expected 40 hex characters")]
    BadOid,
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Digest(sha2::Sha256::digest(bytes).into())
    }
    /// Wraps raw digest bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Digest(bytes)
    }
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    /// Lowercase hex, without the algorithm prefix (the form the Hub uses in ETags and `lfs.oid`).
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
    /// Parses 64 hex characters with no prefix.
    pub fn from_hex(s: &str) -> Result<Self, DigestError> {
        if s.len() != 64 {
            return Err(DigestError::BadHex);
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| DigestError::BadHex)?;
        Ok(Digest(out))
    }
}

impl FromStr for Digest {
    type Err = DigestError;
    /// Accepts `sha256:<hex>` (the OCI form) or bare hex.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some(("sha256", hex)) => Digest::from_hex(hex),
            Some(_) => Err(DigestError::Algorithm),
            None => Digest::from_hex(s),
        }
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A git object id (sha1, 40 hex): what the Hub reports as `oid` for every file and uses as the
/// ETag of non-LFS files.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GitOid([u8; 20]);

impl GitOid {
    /// Parses 40 hex characters.
    pub fn from_hex(s: &str) -> Result<Self, DigestError> {
        let mut out = [0u8; 20];
        if s.len() != 40 {
            return Err(DigestError::BadOid);
        }
        hex::decode_to_slice(s, &mut out).map_err(|_| DigestError::BadOid)?;
        Ok(GitOid(out))
    }
    /// Lowercase hex.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for GitOid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for GitOid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GitOid({})", self.hex())
    }
}

impl serde::Serialize for GitOid {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for GitOid {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        GitOid::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Streaming hasher fed chunk by chunk as bytes arrive: sha256 always, and the git blob sha1 when
/// the final size is known up front (git hashes `blob <size>\0` before the content, so the header
/// must be fed first).
pub struct Hasher {
    sha256: sha2::Sha256,
    git: Option<sha1::Sha1>,
    len: u64,
}

/// What a [`Hasher`] computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashOutcome {
    /// sha256 of all bytes.
    pub sha256: Digest,
    /// git blob sha1, if requested.
    pub git_oid: Option<GitOid>,
    /// Number of bytes hashed.
    pub len: u64,
}

impl Hasher {
    /// A hasher computing sha256, plus the git blob id for a file declared to be `git_size` bytes.
    pub fn new(git_size: Option<u64>) -> Self {
        let git = git_size.map(|n| {
            let mut h = sha1::Sha1::new();
            h.update(format!("blob {n}\0").as_bytes());
            h
        });
        Hasher {
            sha256: sha2::Sha256::new(),
            git,
            len: 0,
        }
    }
    /// Feeds the next chunk.
    pub fn update(&mut self, chunk: &[u8]) {
        sha2::Digest::update(&mut self.sha256, chunk);
        if let Some(g) = self.git.as_mut() {
            g.update(chunk);
        }
        self.len += chunk.len() as u64;
    }
    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// Whether nothing has been fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Final digests.
    pub fn finish(self) -> HashOutcome {
        HashOutcome {
            sha256: Digest(sha2::Digest::finalize(self.sha256).into()),
            git_oid: self.git.map(|g| GitOid(g.finalize().into())),
            len: self.len,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_empty_input() {
        assert_eq!(
            Digest::of(b"").hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn git_blob_id_matches_git() {
        // `printf 'hello\n' | git hash-object --stdin`
        let mut h = Hasher::new(Some(6));
        h.update(b"hel");
        h.update(b"lo\n");
        let out = h.finish();
        assert_eq!(
            out.git_oid.unwrap().hex(),
            "ce013625030ba8dba906f756967f9e9ca394464a"
        );
        assert_eq!(out.len, 6);
        assert_eq!(out.sha256, Digest::of(b"hello\n"));
    }

    #[test]
    fn parses_prefixed_and_bare_and_rejects_others() {
        let hex = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let a: Digest = format!("sha256:{hex}").parse().unwrap();
        let b: Digest = hex.parse().unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_string(), format!("sha256:{hex}"));
        assert_eq!("sha512:00".parse::<Digest>(), Err(DigestError::Algorithm));
        assert_eq!("abc".parse::<Digest>(), Err(DigestError::BadHex));
        assert_eq!(
            hex.replace('e', "g").parse::<Digest>(),
            Err(DigestError::BadHex)
        );
    }
}
