//! Policy: which names may be pulled, and at which pinned revision. Pure and synchronous: a name in,
//! a [`Decision`] out.

use crate::config::{PolicyConfig, PolicyMode};
use crate::error::MirrorError;
use crate::names::{HfRepo, RepoKind, Revision};
use crate::refusal::Refusal;

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

#[derive(Debug, Clone)]
struct Rule {
    kind: RepoKind,
    /// Lowercased org (or the whole id for one-segment ids).
    org: String,
    /// Lowercased repo name, or `None` for `org/*`.
    name: Option<String>,
    pin: Option<Revision>,
}

/// The compiled policy.
#[derive(Debug, Clone)]
pub struct Policy {
    mode: PolicyMode,
    rules: Vec<Rule>,
}

impl Policy {
    /// Compiles the `[policy]` section; a malformed rule is a config error, not a silent no-match.
    pub fn new(cfg: &PolicyConfig) -> Result<Policy, MirrorError> {
        let mut rules = Vec::new();
        for rule in &cfg.allow {
            let bad = |why: &str| {
                MirrorError::Config(format!("[[policy.allow]] hf = {:?}: {why}", rule.hf))
            };
            let (kind, rest) = match rule.hf.strip_prefix("datasets/") {
                Some(rest) => (RepoKind::Dataset, rest),
                None => (RepoKind::Model, rule.hf.as_str()),
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
            });
        }
        Ok(Policy {
            mode: cfg.mode,
            rules,
        })
    }

    /// Decides for one repository. The first matching rule wins; an exact rule is listed by the
    /// operator, so order is theirs to choose. Matching is case-insensitive, as the Hub's ids are.
    pub fn decide(&self, repo: &HfRepo) -> Decision {
        let id = repo.id.as_str().to_ascii_lowercase();
        let (org, name) = id.split_once('/').unwrap_or((id.as_str(), ""));
        let hit = self.rules.iter().find(|r| {
            r.kind == repo.kind
                && r.org == org
                && match &r.name {
                    None => !name.is_empty(),
                    Some(n) => n == name,
                }
        });
        match (hit, self.mode) {
            (Some(rule), _) => Decision::Allowed { pin: rule.pin },
            (None, PolicyMode::Open) => Decision::Allowed { pin: None },
            (None, PolicyMode::Allowlist) => Decision::Refused(Refusal::NotApproved {
                name: repo.policy_name(),
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
            mode: PolicyMode::Allowlist,
            allow: rules
                .iter()
                .map(|(hf, rev)| AllowRule {
                    hf: hf.to_string(),
                    revision: rev.map(String::from),
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
            mode: PolicyMode::Allowlist,
            allow: vec![AllowRule {
                hf: "acme/tiny".into(),
                revision: Some("main".into()),
            }],
        };
        assert!(Policy::new(&bad).is_err());
        let bad = PolicyConfig {
            mode: PolicyMode::Allowlist,
            allow: vec![AllowRule {
                hf: "../x".into(),
                revision: None,
            }],
        };
        assert!(Policy::new(&bad).is_err());
    }
}
