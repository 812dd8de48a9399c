//! Who a client is: `[[clients]]` entries name a client by the sha256 of its token, so the
//! configuration (and anything that reads it) never holds a usable token.
//!
//! A token is what the client already sends: `HF_TOKEN` as `Authorization: Bearer …` from
//! huggingface_hub, basic or bearer auth from OCI clients. [`Clients::authenticate`] maps it to a
//! [`Client`]; the protocol front doors decide what an unknown token or no token means.

use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crate::error::MirrorError;

/// One `[[clients]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// The name requests, downloads and refusals are audited under.
    pub name: String,
    /// sha256 of the client's token, 64 lowercase hex digits (`printf %s "$TOKEN" | sha256sum`).
    pub token_sha256: String,
    /// What the client may do beyond pulling: `reviewer` (the web UI's review pages), `admin`.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// ollama public keys of the client (`ssh-ed25519 AAAA…`, the line of
    /// `~/.ollama/id_ed25519.pub`): ollama sends no token, but signs its registry token request
    /// with this key, which names the client as a token would.
    #[serde(default)]
    pub ollama_keys: Vec<String>,
}

/// A role a client token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// May see review pages, approve (with a signed record) and deny.
    Reviewer,
    /// Everything a reviewer may, and the admin API.
    Admin,
}

/// A client's name: printable, no spaces or control characters, so an audit line stays one
/// token and a name cannot imitate another field.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientName(String);

impl ClientName {
    /// The longest name accepted.
    pub const MAX: usize = 64;

    /// The name as configured.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<&str> for ClientName {
    type Error = String;
    fn try_from(s: &str) -> Result<Self, String> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b));
        if ok {
            Ok(ClientName(s.to_owned()))
        } else {
            Err(format!(
                "client name {s:?}: 1 to {} characters of A-Z a-z 0-9 - _ . @",
                Self::MAX
            ))
        }
    }
}

impl fmt::Display for ClientName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A known client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Its name.
    pub name: ClientName,
    /// Its roles.
    pub roles: Vec<Role>,
}

impl Client {
    /// Whether the client carries `role` (an admin counts as a reviewer too).
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role) || (role == Role::Reviewer && self.roles.contains(&Role::Admin))
    }
}

/// The configured clients, looked up by token.
#[derive(Debug, Clone, Default)]
pub struct Clients {
    by_hash: HashMap<[u8; 32], Arc<Client>>,
    by_name: HashMap<ClientName, Arc<Client>>,
    by_ollama_key: HashMap<[u8; 32], Arc<Client>>,
}

impl Clients {
    /// Validates the entries: names well formed and unique, hashes 64 hex digits and unique.
    pub fn from_entries(entries: &[ClientEntry]) -> Result<Clients, MirrorError> {
        let mut by_hash = HashMap::new();
        let mut by_ollama_key = HashMap::new();
        let mut names = std::collections::HashSet::new();
        for e in entries {
            let name = ClientName::try_from(e.name.as_str())
                .map_err(|why| MirrorError::Config(format!("[[clients]] {why}")))?;
            let hash = parse_hash(&e.token_sha256).ok_or_else(|| {
                MirrorError::Config(format!(
                    "[[clients]] {name}: token_sha256 must be 64 hex digits (the sha256 of the token, not the token)"
                ))
            })?;
            if !names.insert(name.clone()) {
                return Err(MirrorError::Config(format!(
                    "[[clients]] {name}: the name is used twice"
                )));
            }
            let client = Arc::new(Client {
                name: name.clone(),
                roles: e.roles.clone(),
            });
            if by_hash.insert(hash, client.clone()).is_some() {
                return Err(MirrorError::Config(format!(
                    "[[clients]] {name}: the same token hash is configured for two clients"
                )));
            }
            for k in &e.ollama_keys {
                let key = parse_ollama_key(k).ok_or_else(|| {
                    MirrorError::Config(format!(
                        "[[clients]] {name}: ollama_keys: {k:?} is not an ssh-ed25519 public key (the line of ~/.ollama/id_ed25519.pub)"
                    ))
                })?;
                if by_ollama_key.insert(key, client.clone()).is_some() {
                    return Err(MirrorError::Config(format!(
                        "[[clients]] {name}: an ollama key is configured twice"
                    )));
                }
            }
        }
        let by_name = by_hash
            .values()
            .map(|c| (c.name.clone(), c.clone()))
            .collect();
        Ok(Clients {
            by_hash,
            by_name,
            by_ollama_key,
        })
    }

    /// The client an ollama public key (32 raw ed25519 bytes) belongs to. The caller must have
    /// checked a signature by that key: a public key is no secret.
    pub fn by_ollama_key(&self, key: &[u8; 32]) -> Option<Arc<Client>> {
        self.by_ollama_key.get(key).cloned()
    }

    /// The client configured under `name` (for credentials Airlock itself issued to a client it
    /// had authenticated, which carry the name rather than the token).
    pub fn named(&self, name: &str) -> Option<Arc<Client>> {
        let name = ClientName::try_from(name).ok()?;
        self.by_name.get(&name).cloned()
    }

    /// The client whose token this is, if any. The lookup is by the token's sha256, so the
    /// comparison never touches the token itself (nothing to time).
    pub fn authenticate(&self, token: &str) -> Option<Arc<Client>> {
        let hash = verifier::Digest::of(token.as_bytes());
        self.by_hash.get(hash.as_bytes()).cloned()
    }

    /// No clients are configured.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }
}

/// Who is asking, as the front door resolved it from the request: the name the audit log records
/// and the key per-client budgets count under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    who: Who,
    /// The client's address (`unknown` if the connection had none).
    addr: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Who {
    Named(Arc<Client>),
    Anonymous,
    /// A token no `[[clients]]` entry knows: the first 8 hex digits of its sha256, so repeated
    /// attempts with one token can be told apart without recording it.
    Unknown(String),
}

impl Caller {
    /// A configured client, at `addr`.
    pub fn named(client: Arc<Client>, addr: impl Into<String>) -> Caller {
        Caller {
            who: Who::Named(client),
            addr: addr.into(),
        }
    }

    /// A client that sent no token.
    pub fn anonymous(addr: impl Into<String>) -> Caller {
        Caller {
            who: Who::Anonymous,
            addr: addr.into(),
        }
    }

    /// A client whose token no entry knows.
    pub fn unknown(token: &str, addr: impl Into<String>) -> Caller {
        let fingerprint = verifier::Digest::of(token.as_bytes()).hex()[..8].to_owned();
        Caller {
            who: Who::Unknown(fingerprint),
            addr: addr.into(),
        }
    }

    /// The configured client, if the token named one.
    pub fn client(&self) -> Option<&Arc<Client>> {
        match &self.who {
            Who::Named(c) => Some(c),
            _ => None,
        }
    }

    /// The key per-client budgets (review requests, download folding) count under: the name of
    /// a known client, wherever it connects from; otherwise the address alone, so inventing
    /// tokens cannot buy a fresh budget.
    pub fn budget_key(&self) -> String {
        match &self.who {
            Who::Named(c) => format!("client:{}", c.name),
            Who::Anonymous | Who::Unknown(_) => self.addr.clone(),
        }
    }
}

/// How the audit log and review requests name the caller: `alice (10.0.0.7)` for a configured
/// client, `10.0.0.7` for an anonymous one, `10.0.0.7 token:1a2b3c4d` for an unknown token.
impl fmt::Display for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.who {
            Who::Named(c) => write!(f, "{} ({})", c.name, self.addr),
            Who::Anonymous => f.write_str(&self.addr),
            Who::Unknown(fp) => write!(f, "{} token:{fp}", self.addr),
        }
    }
}

/// The raw key of an ssh-ed25519 public key line (`ssh-ed25519 <base64> [comment]`, or the base64
/// alone, as ollama sends it).
fn parse_ollama_key(line: &str) -> Option<[u8; 32]> {
    use base64::Engine;
    let mut fields = line.split_whitespace();
    let first = fields.next()?;
    let b64 = if first == "ssh-ed25519" {
        fields.next()?
    } else {
        first
    };
    let wire = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    ollama_key_from_wire(&wire)
}

/// The raw key of an SSH wire-format ed25519 public key (`string "ssh-ed25519"`, `string key`).
pub fn ollama_key_from_wire(wire: &[u8]) -> Option<[u8; 32]> {
    fn string(b: &[u8]) -> Option<(&[u8], &[u8])> {
        let len = u32::from_be_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let body = b.get(4..4usize.checked_add(len)?)?;
        Some((body, &b[4 + len..]))
    }
    let (kind, rest) = string(wire)?;
    let (key, rest) = string(rest)?;
    if kind != b"ssh-ed25519" || !rest.is_empty() {
        return None;
    }
    key.try_into().ok()
}

fn parse_hash(s: &str) -> Option<[u8; 32]> {
    let s = s.trim().to_ascii_lowercase();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, token: &str, roles: Vec<Role>) -> ClientEntry {
        ClientEntry {
            name: name.into(),
            token_sha256: verifier::Digest::of(token.as_bytes()).hex(),
            roles,
            ollama_keys: Vec::new(),
        }
    }

    #[test]
    fn a_token_finds_its_client_and_nothing_else_does() {
        let c = Clients::from_entries(&[
            entry("ci-bot", "t1", vec![]),
            entry("alice", "t2", vec![Role::Reviewer]),
        ])
        .unwrap();
        assert_eq!(c.authenticate("t1").unwrap().name.as_str(), "ci-bot");
        let alice = c.authenticate("t2").unwrap();
        assert!(alice.has(Role::Reviewer) && !alice.has(Role::Admin));
        assert!(c.authenticate("t3").is_none());
        assert!(c.authenticate("").is_none());
    }

    #[test]
    fn callers_are_named_and_budgeted_by_name_when_known() {
        let c = Clients::from_entries(&[entry("ci-bot", "t1", vec![])]).unwrap();
        let bot = Caller::named(c.authenticate("t1").unwrap(), "10.0.0.7");
        assert_eq!(bot.to_string(), "ci-bot (10.0.0.7)");
        assert_eq!(
            bot.budget_key(),
            Caller::named(c.authenticate("t1").unwrap(), "10.0.0.8").budget_key()
        );
        let anon = Caller::anonymous("10.0.0.9");
        assert_eq!(
            (anon.to_string().as_str(), anon.client()),
            ("10.0.0.9", None)
        );
        let unknown = Caller::unknown("guess", "10.0.0.9");
        assert!(unknown.to_string().starts_with("10.0.0.9 token:"));
        assert!(!unknown.to_string().contains("guess"));
        assert_eq!(unknown.budget_key(), anon.budget_key());
    }

    #[test]
    fn ollama_keys_name_their_client() {
        use base64::Engine;
        let mut wire = Vec::new();
        wire.extend_from_slice(&11u32.to_be_bytes());
        wire.extend_from_slice(b"ssh-ed25519");
        wire.extend_from_slice(&32u32.to_be_bytes());
        wire.extend_from_slice(&[7u8; 32]);
        let b64 = base64::engine::general_purpose::STANDARD.encode(&wire);
        let mut e = entry("laptop", "t", vec![]);
        e.ollama_keys = vec![format!("ssh-ed25519 {b64} me@host")];
        let c = Clients::from_entries(&[e.clone()]).unwrap();
        assert_eq!(c.by_ollama_key(&[7u8; 32]).unwrap().name.as_str(), "laptop");
        assert!(c.by_ollama_key(&[8u8; 32]).is_none());
        assert_eq!(ollama_key_from_wire(&wire), Some([7u8; 32]));
        assert_eq!(ollama_key_from_wire(&wire[..wire.len() - 1]), None);
        e.ollama_keys = vec!["ssh-rsa AAAA".into()];
        assert!(Clients::from_entries(&[e]).is_err());
    }

    #[test]
    fn an_admin_is_also_a_reviewer() {
        let c = Clients::from_entries(&[entry("root", "t", vec![Role::Admin])]).unwrap();
        assert!(c.authenticate("t").unwrap().has(Role::Reviewer));
    }

    #[test]
    fn bad_entries_are_refused() {
        let mut raw = entry("x", "t", vec![]);
        raw.token_sha256 = "t".into();
        assert!(Clients::from_entries(&[raw]).is_err());
        assert!(Clients::from_entries(&[entry("has space", "t", vec![])]).is_err());
        assert!(
            Clients::from_entries(&[entry("a", "t", vec![]), entry("a", "u", vec![])]).is_err()
        );
        assert!(
            Clients::from_entries(&[entry("a", "t", vec![]), entry("b", "t", vec![])]).is_err()
        );
    }
}
