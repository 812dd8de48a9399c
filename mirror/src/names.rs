//! Validated names: what a client may ask for. Everything that reaches the store or an upstream URL
//! has passed through one of these constructors, so `..`, control characters, absurd lengths and
//! percent-encoding tricks stop at the door.

use std::fmt;

/// Why a name was rejected. The message is shown to clients, so it says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {shown:?}: {why}")]
pub struct NameError {
    what: &'static str,
    shown: String,
    why: &'static str,
}

impl NameError {
    fn new(what: &'static str, input: &str, why: &'static str) -> Self {
        // Echo at most a short, printable prefix: the input may be hostile or huge.
        let shown: String = input
            .chars()
            .take(80)
            .map(|c| if c.is_control() { '?' } else { c })
            .collect();
        NameError { what, shown, why }
    }
}

/// Whether a Hub repository is a model or a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RepoKind {
    /// `/api/models/…`, `/{repo}/resolve/…`
    Model,
    /// `/api/datasets/…`, `/datasets/{repo}/resolve/…`
    Dataset,
}

impl RepoKind {
    /// The plural used in API paths (`models`, `datasets`).
    pub fn api_plural(self) -> &'static str {
        match self {
            RepoKind::Model => "models",
            RepoKind::Dataset => "datasets",
        }
    }
}

const MAX_SEGMENT: usize = 96;

fn check_segment(what: &'static str, whole: &str, seg: &str) -> Result<(), NameError> {
    if seg.is_empty() {
        return Err(NameError::new(what, whole, "empty path segment"));
    }
    if seg.len() > MAX_SEGMENT {
        return Err(NameError::new(
            what,
            whole,
            "segment longer than 96 characters",
        ));
    }
    if !seg
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(NameError::new(
            what,
            whole,
            "only letters, digits, '-', '_' and '.' are allowed",
        ));
    }
    if seg.starts_with('.') || seg.starts_with('-') || seg.contains("..") || seg.contains("--") {
        return Err(NameError::new(
            what,
            whole,
            "may not start with '.' or '-' or contain '..' or '--'",
        ));
    }
    Ok(())
}

/// A Hub repository id: `name` (legacy one-segment ids such as `gpt2`) or `org/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoId(String);

impl RepoId {
    /// Validates a repo id.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let mut n = 0;
        for seg in s.split('/') {
            n += 1;
            if n > 2 {
                return Err(NameError::new(
                    "repo id",
                    s,
                    "at most two segments (org/name)",
                ));
            }
            check_segment("repo id", s, seg)?;
        }
        Ok(RepoId(s.to_owned()))
    }
    /// The id as the Hub spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Hugging Face repository: kind plus id. The `Source` of HF artifacts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HfRepo {
    /// Model or dataset.
    pub kind: RepoKind,
    /// The repo id.
    pub id: RepoId,
}

impl HfRepo {
    /// The name as written in policy rules and messages: `org/name` or `datasets/org/name`.
    pub fn policy_name(&self) -> String {
        match self.kind {
            RepoKind::Model => self.id.to_string(),
            RepoKind::Dataset => format!("datasets/{}", self.id),
        }
    }
    /// A stable key for the index, unique per kind and (case-folded) id.
    pub(crate) fn index_key(&self) -> String {
        format!(
            "{}/{}",
            self.kind.api_plural(),
            self.id.as_str().to_ascii_lowercase()
        )
    }
}

impl fmt::Display for HfRepo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.policy_name())
    }
}

/// A git commit: 40 lowercase hex characters. The only kind of revision that is stored or served;
/// branch and tag names are resolved to one first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision([u8; 20]);

impl Revision {
    /// Parses 40 hex characters (either case); anything else is not a commit.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        let mut out = [0u8; 20];
        if s.len() != 40 || hex::decode_to_slice(s, &mut out).is_err() {
            return Err(NameError::new("commit", s, "expected 40 hex characters"));
        }
        Ok(Revision(out))
    }
    /// Lowercase 40-hex.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl serde::Serialize for Revision {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Revision {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Revision::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// What a client names as a revision: a branch, a tag, `refs/pr/N`, or a commit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RevisionName(String);

impl RevisionName {
    /// Validates an (already percent-decoded) revision name.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() || s.len() > 255 {
            return Err(NameError::new("revision", s, "must be 1 to 255 characters"));
        }
        if s.chars().any(|c| c.is_control() || c == '\\' || c == ' ')
            || s.starts_with('/')
            || s.ends_with('/')
            || s.split('/')
                .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(NameError::new("revision", s, "not a valid git ref name"));
        }
        Ok(RevisionName(s.to_owned()))
    }
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The commit, if the name is one.
    pub fn as_commit(&self) -> Option<Revision> {
        Revision::parse(&self.0).ok()
    }
}

impl fmt::Display for RevisionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A file path inside a repository: relative, `/`-separated, no `.`/`..` segments, no backslashes or
/// control characters, at most 1024 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct RepoPath(String);

impl RepoPath {
    /// Validates a path (already percent-decoded).
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() || s.len() > 1024 {
            return Err(NameError::new("file path", s, "must be 1 to 1024 bytes"));
        }
        if s.chars().any(|c| c.is_control() || c == '\\') {
            return Err(NameError::new(
                "file path",
                s,
                "control characters and backslashes are not allowed",
            ));
        }
        if s.split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err(NameError::new(
                "file path",
                s,
                "empty, '.' and '..' segments are not allowed",
            ));
        }
        Ok(RepoPath(s.to_owned()))
    }
    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for RepoPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RepoPath::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn ollama_part(what: &'static str, s: &str, allow_dot: bool) -> Result<(), NameError> {
    let ok_char =
        |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (allow_dot && b == b'.');
    match s.as_bytes().first() {
        None => Err(NameError::new(what, s, "must not be empty")),
        _ if s.len() > 80 => Err(NameError::new(what, s, "longer than 80 characters")),
        Some(b) if !(b.is_ascii_alphanumeric() || *b == b'_') => Err(NameError::new(
            what,
            s,
            "must start with a letter, digit or '_'",
        )),
        _ if !s.bytes().all(ok_char) => Err(NameError::new(
            what,
            s,
            if allow_dot {
                "only letters, digits, '_', '-' and '.' are allowed"
            } else {
                "only letters, digits, '_' and '-' are allowed"
            },
        )),
        _ => Ok(()),
    }
}

/// An Ollama registry model name: `namespace/model` (as in `library/llama3`), validated with
/// ollama's own part rules. The namespace is required: `host/model:tag` is not a valid pull name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OllamaName {
    namespace: String,
    model: String,
}

impl OllamaName {
    /// Validates the two parts.
    pub fn new(namespace: &str, model: &str) -> Result<Self, NameError> {
        ollama_part("namespace", namespace, false)?;
        ollama_part("model name", model, true)?;
        Ok(OllamaName {
            namespace: namespace.to_owned(),
            model: model.to_owned(),
        })
    }
    /// The namespace (`library`).
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
    /// The model (`llama3`).
    pub fn model(&self) -> &str {
        &self.model
    }
    /// Case-folded key: ollama matches names case-insensitively.
    pub(crate) fn index_key(&self) -> String {
        format!(
            "ollama/{}/{}",
            self.namespace.to_ascii_lowercase(),
            self.model.to_ascii_lowercase()
        )
    }
}

impl fmt::Display for OllamaName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.model)
    }
}

/// An Ollama tag (`8b`, `latest`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Tag(String);

impl Tag {
    /// Validates a tag.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        ollama_part("tag", s, true)?;
        Ok(Tag(s.to_owned()))
    }
    /// The tag.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a manifest request names: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A tag, resolved (or pinned) to a digest.
    Tag(Tag),
    /// A manifest digest.
    Digest(verifier::Digest),
}

impl Reference {
    /// Parses `sha256:<hex>` as a digest, anything else as a tag.
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.contains(':') {
            s.parse::<verifier::Digest>()
                .map(Reference::Digest)
                .map_err(|_| {
                    NameError::new("digest", s, "only sha256:<64 hex> digests are supported")
                })
        } else {
            Tag::parse(s).map(Reference::Tag)
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => t.fmt(f),
            Reference::Digest(d) => d.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ollama_names() {
        assert!(OllamaName::new("library", "llama3.1").is_ok());
        assert!(OllamaName::new("my_ns", "m-1").is_ok());
        for (ns, m) in [
            ("", "x"),
            ("a.b", "x"),
            ("a", ""),
            ("a", ".x"),
            ("a", "x/y"),
            ("a:b", "x"),
            ("a", &"x".repeat(81)),
        ] {
            assert!(OllamaName::new(ns, m).is_err(), "{ns}/{m} accepted");
        }
        assert!(matches!(Reference::parse("8b"), Ok(Reference::Tag(_))));
        assert!(matches!(
            Reference::parse(&format!("sha256:{}", "a".repeat(64))),
            Ok(Reference::Digest(_))
        ));
        assert!(Reference::parse("sha512:00").is_err());
        assert!(Reference::parse("..").is_err());
    }

    #[test]
    fn repo_ids() {
        assert!(RepoId::parse("gpt2").is_ok());
        assert!(RepoId::parse("EleutherAI/gpt-j-6b").is_ok());
        assert!(RepoId::parse("Qwen/Qwen2.5-7B").is_ok());
        for bad in [
            "",
            "a/b/c",
            "../etc",
            "a/..",
            "a/.x",
            "a//b",
            "a/b\n",
            "a%2Fb",
            "a b",
            &"x".repeat(97),
        ] {
            assert!(RepoId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn revisions_and_paths() {
        assert!(RevisionName::parse("refs/pr/1").is_ok());
        assert!(RevisionName::parse("main").unwrap().as_commit().is_none());
        let c = "0123456789ABCDEF0123456789abcdef01234567";
        assert_eq!(
            RevisionName::parse(c).unwrap().as_commit().unwrap().hex(),
            c.to_lowercase()
        );
        for bad in ["", "../x", "a/../b", "a\0", "/main", "main/"] {
            assert!(RevisionName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(RepoPath::parse("a/b/model.safetensors").is_ok());
        for bad in ["", "../x", "a/./b", "/etc/passwd", "a\\b", "a//b", "a\u{7}"] {
            assert!(RepoPath::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn name_errors_do_not_echo_control_characters() {
        let e = RepoId::parse("a\u{1b}[31m/b").unwrap_err().to_string();
        assert!(!e.contains('\u{1b}'));
    }
}
