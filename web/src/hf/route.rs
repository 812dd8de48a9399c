//! Parses Hub URLs into typed requests. Paths are split on `/` first and each segment is then
//! percent-decoded, so `refs%2Fpr%2F1` is one revision and `%2F` can never smuggle an extra
//! segment into a repo id (trap T9 of the protocol note).

use mirror::{HfRepo, RepoId, RepoKind, RepoPath, RevisionName};
use percent_encoding::percent_decode_str;

use super::error::HfError;

/// What a request asks for.
#[derive(Debug)]
pub enum Route {
    /// `GET /api/{t}s/{repo}` (revision `main`) or `…/revision/{rev}`.
    Info { repo: HfRepo, rev: RevisionName },
    /// `GET /api/{t}s/{repo}/tree/{rev}[/{path}]`.
    Tree {
        repo: HfRepo,
        rev: RevisionName,
        path: Option<RepoPath>,
    },
    /// `POST /api/{t}s/{repo}/paths-info/{rev}`.
    PathsInfo { repo: HfRepo, rev: RevisionName },
    /// `GET /api/{t}s/{repo}/xet-read-token/{rev}`: never served.
    XetToken,
    /// `HEAD|GET /[datasets/]{repo}/resolve/{rev}/{path}`.
    Resolve {
        repo: HfRepo,
        rev: RevisionName,
        path: RepoPath,
    },
    /// Liveness probe.
    Health,
}

impl Route {
    /// The route's pattern, for `/metrics` (a fixed string per kind of request, so the series stay
    /// few whatever repos and paths are asked for).
    pub fn pattern(&self) -> &'static str {
        match self {
            Route::Info { .. } => "/api/{type}s/{repo}[/revision/{rev}]",
            Route::Tree { .. } => "/api/{type}s/{repo}/tree/{rev}/{path}",
            Route::PathsInfo { .. } => "/api/{type}s/{repo}/paths-info/{rev}",
            Route::XetToken => "/api/{type}s/{repo}/xet-read-token/{rev}",
            Route::Resolve { .. } => "/{repo}/resolve/{rev}/{path}",
            Route::Health => "/healthz",
        }
    }
}

const API_ACTIONS: &[&str] = &[
    "revision",
    "tree",
    "paths-info",
    "xet-read-token",
    "commits",
    "refs",
    "discussions",
    "preupload",
    "commit",
];
/// Raw URL paths longer than this are refused before any parsing.
const MAX_PATH: usize = 4096;

fn decode(seg: &str) -> Result<String, HfError> {
    percent_decode_str(seg)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| HfError::BadRequest("airlock: path is not valid UTF-8".into()))
}

/// Splits `segs` into a repo id of one or two segments and the rest, given the position of the
/// keyword that must follow the id (`resolve`, or an API action).
fn split_repo<'a>(
    segs: &'a [&'a str],
    keyword: impl Fn(&str) -> bool,
) -> Option<(Vec<&'a str>, &'a str, &'a [&'a str])> {
    // Prefer the two-segment form (`org/name/resolve/...`): one-segment ids are the legacy case.
    if segs.len() >= 3 && keyword(segs[2]) {
        return Some((segs[..2].to_vec(), segs[2], &segs[3..]));
    }
    if segs.len() >= 2 && keyword(segs[1]) {
        return Some((segs[..1].to_vec(), segs[1], &segs[2..]));
    }
    None
}

fn repo(kind: RepoKind, id_segs: &[&str]) -> Result<HfRepo, HfError> {
    let decoded: Vec<String> = id_segs
        .iter()
        .map(|s| decode(s))
        .collect::<Result<_, _>>()?;
    // `acme%2Ftiny` is one segment that decodes to two: a smuggled separator, not a repo id.
    if decoded.iter().any(|s| s.contains('/')) {
        return Err(HfError::BadRequest(
            "airlock: encoded '/' inside a repo id".into(),
        ));
    }
    Ok(HfRepo {
        kind,
        id: RepoId::parse(&decoded.join("/"))?,
    })
}

fn rev(seg: &str) -> Result<RevisionName, HfError> {
    Ok(RevisionName::parse(&decode(seg)?)?)
}

fn file_path(segs: &[&str]) -> Result<RepoPath, HfError> {
    let decoded: Vec<String> = segs.iter().map(|s| decode(s)).collect::<Result<_, _>>()?;
    Ok(RepoPath::parse(&decoded.join("/"))?)
}

/// Parses a raw (still percent-encoded) request path.
pub fn parse(method: &str, raw: &str) -> Result<Route, HfError> {
    // A HEAD is a GET without the body (actix drops the body itself).
    let method = if method == "HEAD" { "GET" } else { method };
    if raw.len() > MAX_PATH {
        return Err(HfError::BadRequest("airlock: request path too long".into()));
    }
    let no_route = || HfError::NoRoute(raw.chars().take(200).collect());
    let trimmed = raw.strip_prefix('/').unwrap_or(raw);
    let segs: Vec<&str> = trimmed.split('/').collect();
    match segs.as_slice() {
        ["healthz"] => return Ok(Route::Health),
        ["api", kind @ ("models" | "datasets"), rest @ ..] => {
            let kind = if *kind == "models" {
                RepoKind::Model
            } else {
                RepoKind::Dataset
            };
            let main = || RevisionName::parse("main").map_err(HfError::from);
            if let Some((id, action, tail)) = split_repo(rest, |s| API_ACTIONS.contains(&s)) {
                let repo = repo(kind, &id)?;
                return match (method, action, tail) {
                    ("GET", "revision", [r]) => Ok(Route::Info { repo, rev: rev(r)? }),
                    ("GET", "tree", [r]) => Ok(Route::Tree {
                        repo,
                        rev: rev(r)?,
                        path: None,
                    }),
                    ("GET", "tree", [r, p @ ..]) => Ok(Route::Tree {
                        repo,
                        rev: rev(r)?,
                        path: Some(file_path(p)?),
                    }),
                    ("POST", "paths-info", [r]) => Ok(Route::PathsInfo { repo, rev: rev(r)? }),
                    (_, "xet-read-token", _) => Ok(Route::XetToken),
                    _ => Err(no_route()),
                };
            }
            if method == "GET" && (1..=2).contains(&rest.len()) {
                return Ok(Route::Info {
                    repo: repo(kind, rest)?,
                    rev: main()?,
                });
            }
            Err(no_route())
        }
        ["api", ..] => Err(no_route()),
        _ => {
            let (kind, rest) = match segs.split_first() {
                Some((&"datasets", rest)) => (RepoKind::Dataset, rest),
                _ => (RepoKind::Model, segs.as_slice()),
            };
            match split_repo(rest, |s| s == "resolve") {
                Some((id, _, [r, p @ ..])) if !p.is_empty() && method == "GET" => {
                    Ok(Route::Resolve {
                        repo: repo(kind, &id)?,
                        rev: rev(r)?,
                        path: file_path(p)?,
                    })
                }
                _ => Err(no_route()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(
            parse("GET", "/api/models/gpt2"),
            Ok(Route::Info { .. })
        ));
        assert!(matches!(
            parse("GET", "/api/models/acme/tiny"),
            Ok(Route::Info { .. })
        ));
        match parse("GET", "/api/models/gpt2/revision/refs%2Fpr%2F1").unwrap() {
            Route::Info { repo, rev } => {
                assert_eq!(repo.id.as_str(), "gpt2");
                assert_eq!(rev.as_str(), "refs/pr/1");
            }
            r => panic!("{r:?}"),
        }
        match parse("HEAD", "/datasets/acme/ds/resolve/main/data/x%20y.parquet").unwrap() {
            Route::Resolve { repo, path, .. } => {
                assert_eq!(repo.kind, RepoKind::Dataset);
                assert_eq!(path.as_str(), "data/x y.parquet");
            }
            r => panic!("{r:?}"),
        }
        match parse("GET", "/gpt2/resolve/main/config.json").unwrap() {
            Route::Resolve { repo, .. } => assert_eq!(repo.id.as_str(), "gpt2"),
            r => panic!("{r:?}"),
        }
        assert!(matches!(
            parse("GET", "/api/models/a/b/tree/main/sub/dir"),
            Ok(Route::Tree { path: Some(_), .. })
        ));
        assert!(matches!(
            parse("POST", "/api/datasets/a/b/paths-info/main"),
            Ok(Route::PathsInfo { .. })
        ));
        assert!(matches!(
            parse("GET", "/api/models/a/b/xet-read-token/abc"),
            Ok(Route::XetToken)
        ));
        assert!(matches!(
            parse("GET", "/api/agent-harnesses"),
            Err(HfError::NoRoute(_))
        ));
        assert!(matches!(
            parse("GET", "/api/models/a/b/commits/main"),
            Err(HfError::NoRoute(_))
        ));
    }

    #[test]
    fn hostile_paths() {
        for p in [
            "/a/../b/resolve/main/x",
            "/a%2F..%2Fb/c/resolve/main/x",
            "/a/b/resolve/main/../../etc/passwd",
            "/a/b/resolve/main/x%2F..%2F..%2Fy",
            "/a/b/resolve/..%2F..%2Fmain/x",
            "/a%0A/b/resolve/main/x",
            "/a/b/resolve/main/%00",
            "/a/b/resolve/main/x%FF",
        ] {
            assert!(parse("GET", p).is_err(), "{p} accepted");
        }
        let long = format!("/{}/b/resolve/main/x", "a".repeat(5000));
        assert!(matches!(parse("GET", &long), Err(HfError::BadRequest(_))));
    }
}
