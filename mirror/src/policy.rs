//! Policy: which names may be pulled, and at which pinned revision. Pure and synchronous: a name in,
//! a [`Decision`] out.

use crate::config::{PolicyConfig, PolicyMode};
use crate::error::MirrorError;
use crate::names::{HfRepo, OllamaName, Reference, RepoKind, Revision, Tag};
use crate::refusal::Refusal;
use verifier::Digest;

/// The answer of the policy for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// May be pulled; if `pin` is set, only at that commit.
    Allowed {
        /// The approved commit, if the rule pins one.
        pin: Option<Revision>,
    },
    /// Refused, with the reason.
    Refused(Refusal),
}

/// The answer of the policy for an Ollama model reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OllamaDecision {
    /// May be pulled; if `pin` is set, the tag means exactly this manifest.
    Allowed {
        /// The approved manifest digest, if the rule pins one.
        pin: Option<Digest>,
    },
    /// Refused, with the reason.
    Refused(Refusal),
}

/// What the allow rules say about one manifest digest of a name (asked by digest, or behind a
/// blob): the input of [`crate::pipeline`]'s scope decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestCover {
    /// A rule pins exactly this manifest.
    Pinned,
    /// A rule allows every tag of the name (or the mode is open): the digest is covered only if
    /// the upstream answers it under this same name.
    IfUpstreamConfirms,
    /// No rule covers it.
    Refused(Refusal),
}

#[derive(Debug, Clone)]
struct OllamaRule {
    /// Lowercased namespace.
    namespace: String,
    /// Lowercased model, or `None` for `namespace/*`.
    model: Option<String>,
    /// Lowercased tag, if the rule approves only one.
    tag: Option<String>,
    pin: Option<Digest>,
}

#[derive(Debug, Clone)]
struct Rule {
    kind: RepoKind,
    /// Lowercased org (or the whole id for one-segment ids).
    org: String,
    /// Lowercased repo name, or `None` for `org/*`.
    name: Option<String>,
    pin: Option<Revision>,
    allow_pr_refs: bool,
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    mode: PolicyMode,
    rules: Vec<Rule>,
    ollama: Vec<OllamaRule>,
    /// The rules' names as written (`hf` names, then `ollama` names), for typosquat suggestions.
    written: (Vec<String>, Vec<String>),
}

impl Policy {
    /// Compiles the `[policy]` section; a malformed rule is a config error, not a silent no-match.
    pub fn new(cfg: &PolicyConfig) -> Result<Policy, MirrorError> {
        let mut rules = Vec::new();
        let mut ollama = Vec::new();
        for rule in &cfg.allow {
            let hf = match (&rule.hf, &rule.ollama) {
                (Some(hf), None) => hf,
                (None, Some(name)) => {
                    ollama.push(Self::ollama_rule(name, rule)?);
                    continue;
                }
                _ => {
                    return Err(MirrorError::Config(
                        "[[policy.allow]]: set exactly one of hf or ollama".into(),
                    ))
                }
            };
            let bad =
                |why: &str| MirrorError::Config(format!("[[policy.allow]] hf = {hf:?}: {why}"));
            if rule.tag.is_some() || rule.manifest.is_some() {
                return Err(bad("tag and manifest apply to ollama rules; use revision"));
            }
            let (kind, rest) = match hf.strip_prefix("datasets/") {
                Some(rest) => (RepoKind::Dataset, rest),
                None => (RepoKind::Model, hf.as_str()),
            };
            let (org, name) = match rest.split_once('/') {
                Some((org, "*")) => (org, None),
                Some((org, name)) => (org, Some(name)),
                None => (rest, Some("")),
            };
            let check = if let Some(name) = name.filter(|n| !n.is_empty()) {
                crate::names::RepoId::parse(&format!("{org}/{name}"))
            } else {
                crate::names::RepoId::parse(org)
            };
            check.map_err(|e| bad(&e.to_string()))?;
            let pin = match &rule.revision {
                Some(r) => {
                    Some(Revision::parse(r).map_err(|_| bad("revision must be a 40-hex commit"))?)
                }
                None => None,
            };
            let (org, name) = match name {
                // One-segment id such as `gpt2`: stored as the org with an empty name.
                Some("") => (org.to_ascii_lowercase(), Some(String::new())),
                Some(n) => (org.to_ascii_lowercase(), Some(n.to_ascii_lowercase())),
                None => (org.to_ascii_lowercase(), None),
            };
            rules.push(Rule {
                kind,
                org,
                name,
                pin,
                allow_pr_refs: rule.allow_pr_refs,
            });
        }
        let written = (
            cfg.allow.iter().filter_map(|r| r.hf.clone()).collect(),
            cfg.allow.iter().filter_map(|r| r.ollama.clone()).collect(),
        );
        Ok(Policy {
            mode: cfg.mode,
            rules,
            ollama,
            written,
        })
    }

    fn ollama_rule(name: &str, rule: &crate::config::AllowRule) -> Result<OllamaRule, MirrorError> {
        let bad =
            |why: &str| MirrorError::Config(format!("[[policy.allow]] ollama = {name:?}: {why}"));
        if rule.revision.is_some() {
            return Err(bad("revision applies to hf rules; use tag and manifest"));
        }
        if rule.allow_pr_refs {
            return Err(bad("allow_pr_refs applies to hf rules"));
        }
        let (ns, model) = name
            .split_once('/')
            .ok_or_else(|| bad("expected namespace/model (e.g. library/llama3)"))?;
        let model = if model == "*" {
            OllamaName::new(ns, "x").map_err(|e| bad(&e.to_string()))?;
            None
        } else {
            OllamaName::new(ns, model).map_err(|e| bad(&e.to_string()))?;
            Some(model.to_ascii_lowercase())
        };
        let tag = match &rule.tag {
            Some(t) => Some(
                Tag::parse(t)
                    .map_err(|e| bad(&e.to_string()))?
                    .as_str()
                    .to_ascii_lowercase(),
            ),
            None => None,
        };
        let pin = match &rule.manifest {
            Some(_) if tag.is_none() || model.is_none() => {
                return Err(bad("a manifest pin needs a model and a tag"))
            }
            Some(d) => Some(
                d.parse::<Digest>()
                    .map_err(|_| bad("manifest must be sha256:<64 hex>"))?,
            ),
            None => None,
        };
        Ok(OllamaRule {
            namespace: ns.to_ascii_lowercase(),
            model,
            tag,
            pin,
        })
    }

    /// Every commit an HF rule pins and every manifest an Ollama rule pins: what the cache must
    /// keep (eviction never drops what a pin serves).
    pub fn pins(&self) -> (Vec<Revision>, Vec<Digest>) {
        (
            self.rules.iter().filter_map(|r| r.pin).collect(),
            self.ollama.iter().filter_map(|r| r.pin).collect(),
        )
    }

    /// Decides for an Ollama reference. A rule that names a tag approves only that tag (and its
    /// pinned manifest, if any); a pinned model may also be asked for by its pinned digest.
    pub fn decide_ollama(&self, name: &OllamaName, reference: &Reference) -> OllamaDecision {
        let ns = name.namespace().to_ascii_lowercase();
        let model = name.model().to_ascii_lowercase();
        let mut name_matched = false;
        for r in &self.ollama {
            if r.namespace != ns || r.model.as_ref().is_some_and(|m| *m != model) {
                continue;
            }
            name_matched = true;
            let ok = match (&r.tag, reference) {
                (None, _) => true,
                (Some(t), Reference::Tag(asked)) => *t == asked.as_str().to_ascii_lowercase(),
                (Some(_), Reference::Digest(d)) => r.pin == Some(*d),
            };
            if ok {
                let pin = r.pin.filter(|_| matches!(reference, Reference::Tag(_)));
                return OllamaDecision::Allowed { pin };
            }
        }
        let shown = format!("{name}:{reference}");
        match (name_matched, self.mode) {
            (false, PolicyMode::Open) => OllamaDecision::Allowed { pin: None },
            (true, _) => OllamaDecision::Refused(Refusal::NotApproved {
                name: format!("{shown} (other tags of {name} are approved)"),
                request: None,
            }),
            (false, PolicyMode::Allowlist) => OllamaDecision::Refused(Refusal::NotApproved {
                name: shown,
                request: None,
            }),
        }
    }

    /// What the rules say about the manifest `digest` under `name`. A pinned rule covers its pin
    /// only; a rule with a tag but no pin covers no digest (the tag is resolved upstream instead);
    /// a rule without a tag covers whatever the upstream serves under the name.
    pub fn ollama_digest(&self, name: &OllamaName, digest: &Digest) -> DigestCover {
        let ns = name.namespace().to_ascii_lowercase();
        let model = name.model().to_ascii_lowercase();
        let mut name_matched = false;
        let mut open = false;
        for r in &self.ollama {
            if r.namespace != ns || r.model.as_ref().is_some_and(|m| *m != model) {
                continue;
            }
            name_matched = true;
            if r.pin == Some(*digest) {
                return DigestCover::Pinned;
            }
            open |= r.tag.is_none();
        }
        if open || (!name_matched && self.mode == PolicyMode::Open) {
            return DigestCover::IfUpstreamConfirms;
        }
        DigestCover::Refused(Refusal::NotApproved {
            name: format!("{name}@{digest}"),
            request: None,
        })
    }

    /// Whether blobs of `name` may be served at all (some rule allows the name).
    pub fn ollama_name_allowed(&self, name: &OllamaName) -> bool {
        let ns = name.namespace().to_ascii_lowercase();
        let model = name.model().to_ascii_lowercase();
        self.mode == PolicyMode::Open
            || self
                .ollama
                .iter()
                .any(|r| r.namespace == ns && r.model.as_ref().is_none_or(|m| *m == model))
    }

    /// Names the allow rules approve, as written (`org/repo`, `org/*`, `datasets/…`; or Ollama's
    /// `namespace/model`).
    pub fn allowed_names(&self, ollama: bool) -> &[String] {
        if ollama {
            &self.written.1
        } else {
            &self.written.0
        }
    }

    /// Whether the rule that decides for `repo` lets pull-request refs (`refs/pr/N`) be served.
    /// Open mode without a rule does not: a pull request is not the repo owner's content.
    pub fn allows_pr_refs(&self, repo: &HfRepo) -> bool {
        self.rule_for(repo).is_some_and(|r| r.allow_pr_refs)
    }

    /// The first rule matching `repo`.
    fn rule_for(&self, repo: &HfRepo) -> Option<&Rule> {
        let id = repo.id.as_str().to_ascii_lowercase();
        let (org, name) = id.split_once('/').unwrap_or((id.as_str(), ""));
        self.rules.iter().find(|r| {
            r.kind == repo.kind
                && r.org == org
                && match &r.name {
                    None => !name.is_empty(),
                    Some(n) => n == name,
                }
        })
    }

    /// Decides for one repository. The first matching rule wins; an exact rule is listed by the
    /// operator, so order is theirs to choose. Matching is case-insensitive, as the Hub's ids are.
    pub fn decide(&self, repo: &HfRepo) -> Decision {
        let hit = self.rule_for(repo);
        match (hit, self.mode) {
            (Some(rule), _) => Decision::Allowed { pin: rule.pin },
            (None, PolicyMode::Open) => Decision::Allowed { pin: None },
            (None, PolicyMode::Allowlist) => Decision::Refused(Refusal::NotApproved {
                name: repo.policy_name(),
                request: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AllowRule;
    use crate::names::RepoId;

    fn repo(kind: RepoKind, id: &str) -> HfRepo {
        HfRepo {
            kind,
            id: RepoId::parse(id).unwrap(),
        }
    }

    fn policy(rules: &[(&str, Option<&str>)]) -> Policy {
        Policy::new(&PolicyConfig {
            licenses: Vec::new(),
            require_client_token: false,
            mode: PolicyMode::Allowlist,
            allow: rules
                .iter()
                .map(|(hf, rev)| AllowRule {
                    hf: Some(hf.to_string()),
                    revision: rev.map(String::from),
                    ..Default::default()
                })
                .collect(),
        })
        .unwrap()
    }

    #[test]
    fn exact_glob_dataset_and_single_segment() {
        let p = policy(&[
            ("acme/tiny", None),
            ("org/*", None),
            ("datasets/acme/ds", None),
            ("gpt2", None),
        ]);
        assert_eq!(
            p.decide(&repo(RepoKind::Model, "acme/tiny")),
            Decision::Allowed { pin: None }
        );
        assert_eq!(
            p.decide(&repo(RepoKind::Model, "ACME/Tiny")),
            Decision::Allowed { pin: None }
        );
        assert_eq!(
            p.decide(&repo(RepoKind::Model, "org/anything")),
            Decision::Allowed { pin: None }
        );
        assert_eq!(
            p.decide(&repo(RepoKind::Dataset, "acme/ds")),
            Decision::Allowed { pin: None }
        );
        assert_eq!(
            p.decide(&repo(RepoKind::Model, "gpt2")),
            Decision::Allowed { pin: None }
        );
        assert!(matches!(
            p.decide(&repo(RepoKind::Model, "acme/ds")),
            Decision::Refused(_)
        ));
        assert!(matches!(
            p.decide(&repo(RepoKind::Dataset, "acme/tiny")),
            Decision::Refused(_)
        ));
        assert!(matches!(
            p.decide(&repo(RepoKind::Model, "acme/tiny2")),
            Decision::Refused(_)
        ));
        assert!(matches!(
            p.decide(&repo(RepoKind::Model, "org")),
            Decision::Refused(_)
        ));
    }

    #[test]
    fn pins_and_bad_rules() {
        let c = "0123456789abcdef0123456789abcdef01234567";
        let p = policy(&[("acme/tiny", Some(c))]);
        assert_eq!(
            p.decide(&repo(RepoKind::Model, "acme/tiny")),
            Decision::Allowed {
                pin: Some(Revision::parse(c).unwrap())
            }
        );
        let bad = PolicyConfig {
            licenses: Vec::new(),
            require_client_token: false,
            mode: PolicyMode::Allowlist,
            allow: vec![AllowRule {
                hf: Some("acme/tiny".into()),
                revision: Some("main".into()),
                ..Default::default()
            }],
        };
        assert!(Policy::new(&bad).is_err());
        let bad = PolicyConfig {
            licenses: Vec::new(),
            require_client_token: false,
            mode: PolicyMode::Allowlist,
            allow: vec![AllowRule {
                hf: Some("../x".into()),
                ..Default::default()
            }],
        };
        assert!(Policy::new(&bad).is_err());
    }

    #[test]
    fn ollama_rules() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let p = Policy::new(&PolicyConfig {
            licenses: Vec::new(),
            require_client_token: false,
            mode: PolicyMode::Allowlist,
            allow: vec![
                AllowRule {
                    ollama: Some("library/llama3".into()),
                    tag: Some("8b".into()),
                    manifest: Some(d.clone()),
                    ..Default::default()
                },
                AllowRule {
                    ollama: Some("acme/*".into()),
                    ..Default::default()
                },
            ],
        })
        .unwrap();
        let n = |ns: &str, m: &str| OllamaName::new(ns, m).unwrap();
        let tag = |t: &str| Reference::parse(t).unwrap();
        let pin: Digest = d.parse().unwrap();
        assert_eq!(
            p.decide_ollama(&n("library", "Llama3"), &tag("8B")),
            OllamaDecision::Allowed { pin: Some(pin) }
        );
        assert_eq!(
            p.decide_ollama(&n("library", "llama3"), &Reference::Digest(pin)),
            OllamaDecision::Allowed { pin: None }
        );
        assert!(matches!(
            p.decide_ollama(&n("library", "llama3"), &tag("70b")),
            OllamaDecision::Refused(_)
        ));
        assert!(matches!(
            p.decide_ollama(&n("library", "mistral"), &tag("latest")),
            OllamaDecision::Refused(_)
        ));
        assert_eq!(
            p.decide_ollama(&n("acme", "anything"), &tag("x")),
            OllamaDecision::Allowed { pin: None }
        );
        assert_eq!(
            p.ollama_digest(&n("library", "llama3"), &pin),
            DigestCover::Pinned
        );
        let other: Digest = format!("sha256:{}", "cd".repeat(32)).parse().unwrap();
        // A pinned name covers its pin only; an open rule only what the upstream confirms.
        assert!(matches!(
            p.ollama_digest(&n("library", "llama3"), &other),
            DigestCover::Refused(_)
        ));
        assert_eq!(
            p.ollama_digest(&n("acme", "x"), &other),
            DigestCover::IfUpstreamConfirms
        );
        assert!(matches!(
            p.ollama_digest(&n("library", "evil"), &pin),
            DigestCover::Refused(_)
        ));
        assert!(p.ollama_name_allowed(&n("library", "llama3")));
        assert!(!p.ollama_name_allowed(&n("library", "evil")));
        let bad = |r: AllowRule| {
            Policy::new(&PolicyConfig {
                licenses: Vec::new(),
                require_client_token: false,
                mode: PolicyMode::Allowlist,
                allow: vec![r],
            })
            .is_err()
        };
        assert!(bad(AllowRule {
            ollama: Some("llama3".into()),
            ..Default::default()
        }));
        assert!(bad(AllowRule {
            ollama: Some("library/x".into()),
            manifest: Some(d.clone()),
            ..Default::default()
        }));
        assert!(bad(AllowRule {
            ollama: Some("library/x".into()),
            hf: Some("a/b".into()),
            ..Default::default()
        }));
        assert!(bad(AllowRule::default()));
    }
}
