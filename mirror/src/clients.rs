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
}

impl Clients {
    /// Validates the entries: names well formed and unique, hashes 64 hex digits and unique.
    pub fn from_entries(entries: &[ClientEntry]) -> Result<Clients, MirrorError> {
        let mut by_hash = HashMap::new();
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
            if by_hash.insert(hash, client).is_some() {
                return Err(MirrorError::Config(format!(
                    "[[clients]] {name}: the same token hash is configured for two clients"
                )));
            }
        }
        Ok(Clients { by_hash })
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
        assert!(Clients::from_entries(&[entry("a", "t", vec![]), entry("a", "u", vec![])]).is_err());
        assert!(Clients::from_entries(&[entry("a", "t", vec![]), entry("b", "t", vec![])]).is_err());
    }
}
