//! Typosquat detection: is a requested name a near-copy of an approved name or of a well-known
//! publisher? Pure: names in, an optional [`Suspicion`] out.
//!
//! A name is `org/repo`, a legacy one-segment `repo`, `datasets/org/repo`, or `namespace/model`
//! for Ollama (a `:tag` is ignored). Two names are confusable when, after the Hub's own
//! case-insensitivity is taken into account, they
//! - differ only in separators (`qwen3.5` / `qwen35`, `meta_llama` / `meta-llama`);
//! - look alike: UTS #39 confusable skeletons (Cyrillic `е` for Latin `e`, `I` or `1` for `l`,
//!   `0` for `o`) plus `rn`→`m` and `vv`→`w`;
//! - are a Damerau–Levenshtein distance of 1 apart (2 for names of 10 or more characters);
//!   names of 3 or 4 characters only count one slip onto a neighbouring QWERTY key (`Qwrn`), as
//!   any edit would make chance collisions between short real names too common.
//!
//! Orgs and repos are checked separately. An org is checked only if it is neither approved nor
//! well-known: a known org is its owner's namespace, and nobody else can publish in it. Within the
//! same org, repo names are compared for separator and look-alike differences only — an edit
//! distance there (`Qwen2.5-3B` / `Qwen2.5-7B`) is usually another real model, not a squat. Under an
//! unknown org, a repo that is an approved model's name, possibly with a packaging affix (`-GGUF`,
//! `-Instruct`, `-hf`, …), or one edit away from it, is a copy under another publisher and needs
//! its own approval.

use strsim::damerau_levenshtein;
use unicode_security::{skeleton, MixedScript};

/// Why a name looks like a typosquat, phrased for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suspicion {
    /// The name the client probably meant (`EleutherAI/gpt-j-6b`).
    pub like: String,
    /// The explanation, e.g. `looks like "EleutherAI" (one letter missing); did you mean
    /// EleutherAI/gpt-j-6b?`.
    pub reason: String,
}

/// The shipped list of well-known publishers (`mirror/data/well-known-publishers.txt`).
#[derive(Debug, Clone)]
pub struct WellKnown {
    orgs: Vec<String>,
}

const SHIPPED: &str = include_str!("../data/well-known-publishers.txt");

impl WellKnown {
    /// The list compiled into the binary, so the check works air-gapped.
    pub fn shipped() -> WellKnown {
        WellKnown::parse(SHIPPED)
    }

    /// One org per line; blank lines and `#` comments are skipped.
    fn parse(text: &str) -> WellKnown {
        let orgs = text
            .lines()
            .map(|l| l.split('#').next().unwrap_or("").trim())
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        WellKnown { orgs }
    }

    /// The orgs, as the Hub spells them.
    pub fn orgs(&self) -> &[String] {
        &self.orgs
    }

    /// Whether `org` is on the list (case-insensitively, as the Hub resolves names).
    pub fn contains(&self, org: &str) -> bool {
        self.orgs.iter().any(|o| same(o, org))
    }
}

/// A name split into its parts.
#[derive(Debug, Clone)]
struct Name<'a> {
    /// The name as given (for suggestions), `:tag` removed.
    full: &'a str,
    /// `datasets/` if the name had it.
    prefix: &'static str,
    org: Option<&'a str>,
    /// `None` for an `org/*` rule.
    repo: Option<&'a str>,
}

impl<'a> Name<'a> {
    fn parse(s: &'a str) -> Option<Name<'a>> {
        let s = s.trim();
        // An Ollama tag names a version, not a publisher or model.
        let full = match s.rsplit_once(':') {
            Some((before, _)) if !before.is_empty() => before,
            _ => s,
        };
        let (prefix, rest) = match full.strip_prefix("datasets/") {
            Some(rest) => ("datasets/", rest),
            None => ("", full),
        };
        let mut parts = rest.split('/');
        let (org, repo) = match (parts.next(), parts.next(), parts.next()) {
            (Some(repo), None, None) => (None, repo),
            (Some(org), Some(repo), None) => (Some(org), repo),
            _ => return None,
        };
        if org.is_some_and(str::is_empty) || repo.is_empty() {
            return None;
        }
        let repo = if repo == "*" { None } else { Some(repo) };
        Some(Name {
            full,
            prefix,
            org,
            repo,
        })
    }
}

/// Case-insensitive equality, as the Hub compares names.
fn same(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

fn is_separator(c: char) -> bool {
    matches!(c, '-' | '_' | '.' | ' ')
}

/// Lowercase, separators removed.
fn plain(s: &str) -> String {
    s.chars()
        .filter(|&c| !is_separator(c))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The look-alike key: the UTS #39 skeleton (which maps `I`, `1` and `|` to `l`, `0` to `O`,
/// Cyrillic and Greek look-alikes to Latin), lowercased, with what the skeleton leaves alone folded
/// too — `rn`/`m`, `vv`/`w`, and `i` with `l` (in many URL fonts `i`, `l`, `I` and `1` are one
/// stroke) — and separators removed.
fn look(s: &str) -> String {
    let sk: String = skeleton(s).flat_map(char::to_lowercase).collect();
    // `m` itself has skeleton `rn`, so fold that back first; the order makes `rn` and `m` meet.
    sk.replace("rn", "m")
        .replace("vv", "w")
        .replace('0', "o")
        .replace(['1', '|', 'i'], "l")
        .chars()
        .filter(|&c| !is_separator(c))
        .collect()
}

/// Most edits at which two names still count as confusable, by the known name's length.
fn max_edits(known_len: usize) -> usize {
    match known_len {
        0..=4 => 0,
        5..=9 => 1,
        _ => 2,
    }
}

/// How `asked` resembles `known`, for the message; `None` if it does not (or is the same name).
fn confusable(asked: &str, known: &str) -> Option<(usize, String)> {
    if same(asked, known) {
        return None;
    }
    let (pa, pk) = (plain(asked), plain(known));
    if pa == pk {
        return Some((0, "differs only in separators or case".into()));
    }
    if look(asked) == look(known) {
        return Some((0, describe_lookalike(asked, known)));
    }
    let slip = keyboard_slip(&pa, &pk);
    let limit = max_edits(pk.chars().count());
    if limit == 0 {
        // Short names: only a slip onto a neighbouring key, and not on 1–2 letter names.
        return match slip {
            Some((typed, meant)) if pk.chars().count() >= 3 => Some((1, slip_words(typed, meant))),
            _ => None,
        };
    }
    let d = damerau_levenshtein(&pa, &pk).min(damerau_levenshtein(&look(asked), &look(known)));
    if d > limit {
        return None;
    }
    let what = match (d, slip) {
        (1, Some((typed, meant))) => slip_words(typed, meant),
        (1, None) => {
            let (la, lk) = (pa.chars().count(), pk.chars().count());
            if la + 1 == lk {
                "one letter missing".into()
            } else if la == lk + 1 {
                "one letter added".into()
            } else if is_swap(&pa, &pk) {
                "two letters swapped".into()
            } else {
                "one letter changed".into()
            }
        }
        _ => {
            let (la, lk) = (pa.chars().count(), pk.chars().count());
            if la == lk + 2 {
                "two letters added".into()
            } else if la + 2 == lk {
                "two letters missing".into()
            } else {
                "two letters differ".into()
            }
        }
    };
    Some((d, what))
}

fn slip_words(typed: char, meant: char) -> String {
    format!("{typed:?} for {meant:?}, its neighbour on the keyboard")
}

/// QWERTY rows; a key's neighbours are beside it and in the rows above and below.
const KEYBOARD: [&str; 4] = ["1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm"];

fn key_position(c: char) -> Option<(usize, usize)> {
    KEYBOARD
        .iter()
        .enumerate()
        .find_map(|(row, keys)| keys.find(c).map(|col| (row, col)))
}

/// If `a` is `b` with one letter replaced by a neighbouring key, that (typed, meant) pair.
fn keyboard_slip(a: &str, b: &str) -> Option<(char, char)> {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() != b.len() {
        return None;
    }
    let mut diffs = (0..a.len()).filter(|&i| a[i] != b[i]);
    let (i, None) = (diffs.next()?, diffs.next()) else {
        return None;
    };
    let ((ra, ca), (rb, cb)) = (key_position(a[i])?, key_position(b[i])?);
    let near = ra.abs_diff(rb) <= 1 && ca.abs_diff(cb) <= 1 && (ra, ca) != (rb, cb);
    near.then_some((a[i], b[i]))
}

/// Whether `a` is `b` with two adjacent letters swapped.
fn is_swap(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let diffs: Vec<usize> = (0..a.len().min(b.len()))
        .filter(|&i| a[i] != b[i])
        .collect();
    a.len() == b.len() && matches!(diffs[..], [i, j] if j == i + 1 && a[i] == b[j] && a[j] == b[i])
}

/// Names the differing letters: `"II" looks like "ll"`, `"е" (U+0435) looks like "e"`.
fn describe_lookalike(asked: &str, known: &str) -> String {
    let a: Vec<char> = asked.chars().collect();
    let k: Vec<char> = known.chars().collect();
    let eq = |x: char, y: char| x.to_lowercase().eq(y.to_lowercase());
    let mut pre = 0;
    while pre < a.len() && pre < k.len() && eq(a[pre], k[pre]) {
        pre += 1;
    }
    let mut suf = 0;
    while suf < a.len() - pre
        && suf < k.len() - pre
        && eq(a[a.len() - 1 - suf], k[k.len() - 1 - suf])
    {
        suf += 1;
    }
    let da: String = a[pre..a.len() - suf].iter().collect();
    let dk: String = k[pre..k.len() - suf].iter().collect();
    let codes: Vec<String> = da
        .chars()
        .filter(|c| !c.is_ascii())
        .map(|c| format!("U+{:04X}", u32::from(c)))
        .collect();
    if codes.is_empty() {
        format!("{da:?} looks like {dk:?}")
    } else {
        format!("{da:?} ({}) looks like {dk:?}", codes.join(", "))
    }
}

/// Packaging affixes that turn one model into "another" one: quantisations, formats, chat
/// tunings. Compared lowercased, after a separator.
const AFFIXES: &[&str] = &[
    "hf",
    "gguf",
    "ggml",
    "instruct",
    "chat",
    "it",
    "base",
    "awq",
    "gptq",
    "exl2",
    "mlx",
    "onnx",
    "fp16",
    "bf16",
    "fp8",
    "int4",
    "int8",
    "4bit",
    "8bit",
    "q4_k_m",
    "q5_k_m",
    "q8_0",
    "uncensored",
    "abliterated",
    "finetuned",
    "ft",
];

/// `repo` lowercased with packaging affixes stripped from the end, repeatedly.
fn core(repo: &str) -> String {
    let mut s = repo.to_lowercase();
    loop {
        let before = s.len();
        for affix in AFFIXES {
            if let Some(rest) = s.strip_suffix(affix) {
                if let Some(rest) = rest.strip_suffix(is_separator) {
                    if !rest.is_empty() {
                        s.truncate(rest.len());
                        break;
                    }
                }
            }
        }
        if s.len() == before {
            return s;
        }
    }
}

/// Checks `name` against the `approved` names (policy names: `org/repo`, `org/*`,
/// `datasets/org/repo`, `namespace/model`) and the well-known publishers. `None` means "not a
/// typosquat" — not "approved".
pub fn check(name: &str, approved: &[String], well_known: &WellKnown) -> Option<Suspicion> {
    let asked = Name::parse(name)?;
    let approved: Vec<Name<'_>> = approved.iter().filter_map(|a| Name::parse(a)).collect();
    let is_approved = approved.iter().any(|a| {
        a.org.map(str::to_lowercase) == asked.org.map(str::to_lowercase)
            && a.repo.map_or(asked.org.is_some(), |r| {
                asked.repo.is_some_and(|q| same(q, r))
            })
    });
    if is_approved {
        return None;
    }
    let found = match asked.org {
        Some(org) => check_org(&asked, org, &approved, well_known)
            .or_else(|| check_same_org_repo(&asked, org, &approved))
            .or_else(|| {
                let org_known = well_known.contains(org)
                    || approved.iter().any(|a| a.org.is_some_and(|o| same(o, org)));
                if org_known {
                    None
                } else {
                    check_copy(&asked, org, &approved)
                }
            }),
        None => check_one_segment(&asked, &approved),
    };
    found.or_else(|| check_mixed_script(&asked))
}

/// An unknown org that resembles an approved or well-known one.
fn check_org(
    asked: &Name<'_>,
    org: &str,
    approved: &[Name<'_>],
    well_known: &WellKnown,
) -> Option<Suspicion> {
    let approved_orgs = approved.iter().filter_map(|a| a.org);
    if well_known.contains(org) || approved.iter().any(|a| a.org.is_some_and(|o| same(o, org))) {
        return None;
    }
    // Approved orgs first: on a tie, what this mirror actually serves is the likelier intent.
    let (_, known, why) = approved_orgs
        .chain(well_known.orgs().iter().map(String::as_str))
        .filter_map(|known| confusable(org, known).map(|(d, why)| (d, known, why)))
        .min_by_key(|(d, _, _)| *d)?;
    // Suggest the approved name of that org with the same repo (as it is spelled there), else the
    // asked repo under that org.
    let repo = asked.repo.unwrap_or("*");
    let suggestion = approved
        .iter()
        .find(|a| {
            a.org.is_some_and(|o| same(o, known))
                && a.prefix == asked.prefix
                && a.repo.is_some_and(|r| look(r) == look(repo))
        })
        .map(|a| a.full.to_owned())
        .unwrap_or_else(|| format!("{}{known}/{repo}", asked.prefix));
    Some(Suspicion {
        reason: format!("looks like {known:?} ({why}); did you mean {suggestion}?"),
        like: suggestion,
    })
}

/// A repo in an approved org that differs from an approved repo there only in separators or
/// look-alike letters.
fn check_same_org_repo(asked: &Name<'_>, org: &str, approved: &[Name<'_>]) -> Option<Suspicion> {
    let repo = asked.repo?;
    approved
        .iter()
        .filter(|a| a.org.is_some_and(|o| same(o, org)))
        .find_map(|a| {
            let known = a.repo?;
            let (d, why) = confusable(repo, known)?;
            (d == 0).then(|| Suspicion {
                reason: format!("looks like {known:?} ({why}); did you mean {}?", a.full),
                like: a.full.to_owned(),
            })
        })
}

/// Under an unknown org: an approved model's name, with or without packaging affixes, or one edit
/// away from it.
fn check_copy(asked: &Name<'_>, org: &str, approved: &[Name<'_>]) -> Option<Suspicion> {
    let repo = asked.repo?;
    let mine = plain(&core(repo));
    approved
        .iter()
        .filter(|a| a.org.is_some())
        .filter_map(|a| {
            let theirs = plain(&core(a.repo?));
            let d = damerau_levenshtein(&mine, &theirs);
            (d <= max_edits(theirs.chars().count()) || mine == theirs).then_some((d, a))
        })
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| Suspicion {
            reason: format!(
                "{repo:?} from {org:?} looks like a copy of the approved {} under another publisher; did you mean {}?",
                a.full, a.full
            ),
            like: a.full.to_owned(),
        })
}

/// Legacy one-segment ids (`gpt2`) against approved one-segment ids.
fn check_one_segment(asked: &Name<'_>, approved: &[Name<'_>]) -> Option<Suspicion> {
    let repo = asked.repo?;
    approved
        .iter()
        .filter(|a| a.org.is_none())
        .filter_map(|a| {
            let known = a.repo?;
            confusable(repo, known).map(|(d, why)| (d, a, known, why))
        })
        .min_by_key(|(d, ..)| *d)
        .map(|(_, a, known, why)| Suspicion {
            reason: format!("looks like {known:?} ({why}); did you mean {}?", a.full),
            like: a.full.to_owned(),
        })
}

/// A segment mixing scripts (Latin with Cyrillic letters, say) that matched no known name: still
/// no honest publisher names a model that way.
fn check_mixed_script(asked: &Name<'_>) -> Option<Suspicion> {
    let bad = [asked.org, asked.repo]
        .into_iter()
        .flatten()
        .find(|seg| !seg.is_ascii() && !seg.is_single_script())?;
    let codes: Vec<String> = bad
        .chars()
        .filter(|c| !c.is_ascii())
        .map(|c| format!("{c:?} U+{:04X}", u32::from(c)))
        .collect();
    let like: String = skeleton(asked.full).collect();
    Some(Suspicion {
        reason: format!(
            "{bad:?} mixes letters from different scripts ({}); it looks like {like}",
            codes.join(", ")
        ),
        like,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn approved(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    const APPROVED: &[&str] = &[
        "EleutherAI/gpt-j-6b",
        "Qwen/Qwen3.5-7B",
        "meta-llama/Llama-3.1-8B",
        "acme/tiny",
        "datasets/acme/ds",
        "library/llama3",
        "gpt2",
    ];

    #[test]
    fn catches_the_issue_cases() {
        let wk = WellKnown::shipped();
        let ok = approved(APPROVED);
        // (asked, like, words the reason must contain)
        let cases: &[(&str, &str, &[&str])] = &[
            (
                "EleuterAI/gpt-j-6b",
                "EleutherAI/gpt-j-6b",
                &[r#"looks like "EleutherAI" (one letter missing); did you mean EleutherAI/gpt-j-6b?"#],
            ),
            (
                "Qwen/Qwen35-7B",
                "Qwen/Qwen3.5-7B",
                &[r#"looks like "Qwen3.5-7B" (differs only in separators or case)"#],
            ),
            (
                "meta-IIama/Llama-3.1-8B",
                "meta-llama/Llama-3.1-8B",
                &[r#"looks like "meta-llama" ("II" looks like "ll")"#],
            ),
            (
                "Qw\u{0435}n/Qwen2.5-7B",
                "Qwen/Qwen2.5-7B",
                &["U+0435", "did you mean Qwen/Qwen2.5-7B?"],
            ),
            // Mixed scripts that resemble nothing known are refused too.
            (
                "f\u{043E}\u{043E}bar/x",
                "foobar/x",
                &["mixes letters from different scripts", "U+043E"],
            ),
            (
                "Qw\u{0435}n/Qwen3.5-7B",
                "Qwen/Qwen3.5-7B",
                &[r#"("е" (U+0435) looks like "e")"#],
            ),
            (
                "rneta-llama/Llama-3.1-8B",
                "meta-llama/Llama-3.1-8B",
                &[r#"("rn" looks like "m")"#],
            ),
            // Well-known but not approved: the suggestion keeps the asked repo.
            ("mistral-ai/Mistral-7B", "mistralai/Mistral-7B", &["separators"]),
            ("gooogle/gemma-2b", "google/gemma-2b", &["one letter added"]),
            ("micorsoft/phi-2", "microsoft/phi-2", &["two letters swapped"]),
            // A well-known name with a suffix bolted on, on a long name.
            ("Salesforce-AI/blip", "Salesforce/blip", &["two letters added"]),
            ("nvidla/foo", "nvidia/foo", &["looks like \"nvidia\""]),
            // Short names: a neighbouring key only.
            ("Qwrn/Qwen3.5-7B", "Qwen/Qwen3.5-7B", &["'r' for 'e', its neighbour on the keyboard"]),
            ("BAAJ/bge-m3", "BAAI/bge-m3", &["neighbour on the keyboard"]),
            ("mistrakai/x", "mistralai/x", &["'k' for 'l'"]),
            ("deepseek-a1/DeepSeek-R1", "deepseek-ai/DeepSeek-R1", &["\"1\" looks like \"i\""]),
            ("0penai/whisper", "openai/whisper", &["\"0\" looks like \"o\""]),
            ("EIeutherAI/pythia", "EleutherAI/pythia", &[]),
            ("stabiltyai/sdxl", "stabilityai/sdxl", &["one letter missing"]),
            ("HugingFaceH4/zephyr", "HuggingFaceH4/zephyr", &[]),
            ("datasets/EleuterAI/pile", "datasets/EleutherAI/pile", &[]),
            ("libary/llama3", "library/llama3", &[]),
            ("acme/t1ny", "acme/tiny", &[]),
            ("gpt-2", "gpt2", &[]),
            // Copies of approved models under an unknown publisher.
            (
                "randomorg/Llama-3.1-8B-Instruct-GGUF",
                "meta-llama/Llama-3.1-8B",
                &["looks like a copy of the approved meta-llama/Llama-3.1-8B under another publisher"],
            ),
            ("someone/gpt-j-6b", "EleutherAI/gpt-j-6b", &[]),
            ("someone/llama3:8b", "library/llama3", &[]),
        ];
        for (asked, like, words) in cases {
            let s = check(asked, &ok, &wk).unwrap_or_else(|| panic!("{asked} not flagged"));
            assert_eq!(&s.like, like, "{asked}: {}", s.reason);
            for w in *words {
                assert!(s.reason.contains(w), "{asked}: {:?} lacks {w:?}", s.reason);
            }
        }
    }

    #[test]
    fn leaves_real_names_alone() {
        let wk = WellKnown::shipped();
        let only_llama = approved(&[
            "meta-llama/Llama-3.1-8B",
            "meta-llama/Llama-3.1-8B-Instruct",
        ]);
        for name in [
            "mistralai/Mistral-7B",
            "google/gemma-2b",
            "acme/tiny",
            "meta-llama/Llama-3.1-8B",
            "META-LLAMA/llama-3.1-8b",
            "meta-llama/Llama-3.2-1B",
            "meta-llama/Llama-3.1-70B",
            "Qwen/Qwen2.5-7B",
            "EleutherAI/gpt-j-6b",
            "TheBloke/Llama-2-7B-GGUF",
            "unsloth/Llama-3.1-8B-Instruct-GGUF",
            "gpt2",
            "bert-base-uncased",
            "library/mistral",
            "library/llama3:8b",
            "acme-corp/classifier",
            "bigcode/starcoder2-15b",
        ] {
            assert_eq!(check(name, &only_llama, &wk), None, "{name} flagged");
        }
        let all = approved(APPROVED);
        for name in APPROVED {
            assert_eq!(check(name, &all, &wk), None, "approved {name} flagged");
        }
        // Another model of an approved org differing by a digit is another model, not a squat.
        assert_eq!(check("Qwen/Qwen3.5-14B", &all, &wk), None);
        assert_eq!(check("Qwen/Qwen2.5-7B", &all, &wk), None);
        // Org wildcards approve the whole org.
        assert_eq!(check("EleuterAI/x", &approved(&["EleuterAI/*"]), &wk), None);
    }

    /// Well-known orgs that are confusable with each other under the rules above, on purpose: all
    /// are real and all are on the list, so neither flags the other through [`check`]. A new
    /// entry that joins this set must be added here knowingly.
    const NEIGHBOURS: &[(&str, &str)] = &[
        ("xai-org", "zai-org"),
        ("HuggingFaceH4", "huggingface"),
        ("HuggingFaceH4", "HuggingFaceTB"),
        ("HuggingFaceH4", "HuggingFaceM4"),
        ("HuggingFaceTB", "huggingface"),
        ("HuggingFaceM4", "huggingface"),
        ("HuggingFaceM4", "HuggingFaceTB"),
        ("HuggingFaceFW", "huggingface"),
        ("HuggingFaceFW", "HuggingFaceH4"),
        ("HuggingFaceFW", "HuggingFaceTB"),
        ("HuggingFaceFW", "HuggingFaceM4"),
    ];

    #[test]
    fn well_known_orgs_do_not_flag_each_other() {
        let wk = WellKnown::shipped();
        let orgs = wk.orgs();
        let mut seen = std::collections::HashSet::new();
        let mut neighbours = Vec::new();
        for a in orgs {
            assert!(seen.insert(a.to_lowercase()), "{a} listed twice");
            // Through the real check: a listed org never flags, whatever else is approved.
            assert_eq!(check(&format!("{a}/model"), &[], &wk), None, "{a}");
            for b in orgs {
                if a == b {
                    continue;
                }
                let with_b = approved(&[&format!("{b}/model")]);
                assert_eq!(
                    check(&format!("{a}/model"), &with_b, &wk),
                    None,
                    "{a} vs {b}"
                );
                if a < b && confusable(a, b).is_some() {
                    neighbours.push((a.as_str(), b.as_str()));
                }
            }
        }
        assert_eq!(neighbours, NEIGHBOURS);
    }

    /// Real Hub orgs that are not on the list must not be mistaken for ones that are.
    #[test]
    fn real_unlisted_orgs_pass() {
        let wk = WellKnown::shipped();
        let mut flagged = Vec::new();
        for org in [
            "TinyLlama",
            "Gryphe",
            "Sao10K",
            "mlabonne",
            "openchat",
            "lightonai",
            "h2oai",
            "rhymes-ai",
            "codellama",
            "Open-Orca",
            "garage-bAInd",
            "migtissera",
            "jondurbin",
            "distil-whisper",
            "ProsusAI",
            "finiteautomata",
            "dmis-lab",
            "emilyalsentzer",
            "microsoft-research",
            "vikhyatk",
            "openbmb-lab",
            "nateraw",
            "philschmid",
            "lysandre",
            "julien-c",
            "osanseviero",
            "sayakpaul",
            "patrickvonplaten",
            "ybelkada",
            "abhishek",
            "Intel-NLP",
            "amazon-science",
            "AI-Sweden-Models",
            "KBLab",
            "uer",
            "hfl",
            "ckiplab",
            "cl-tohoku",
            "rinna",
            "cyberagent",
            "elyza",
            "stockmark",
            "tokyotech-llm",
            "LGAI-EXAONE",
            "naver",
            "kakaobrain",
            "skt",
            "beomi",
            "upskyy",
            "snunlp",
            "Davlan",
            "masakhane",
            "facebookresearch",
            "google-deepmind",
            "nvidia-research",
            "Nexusflow",
            "LanguageBind",
            "Lin-Chen",
            "liuhaotian",
            "Vision-CAIR",
            "THUdyh",
            "Efficient-Large-Model",
            "openai-gpt",
            "apple-ml",
            "Writer-AI",
            "laion-ai",
            "bigscience-data",
            "allenai-org",
        ] {
            if let Some(s) = check(&format!("{org}/model"), &[], &wk) {
                flagged.push(format!("{org}: {}", s.reason));
            }
        }
        assert!(flagged.is_empty(), "{flagged:#?}");
    }

    #[test]
    fn shipped_list_is_sane() {
        let wk = WellKnown::shipped();
        assert!(wk.orgs().len() >= 100);
        for org in wk.orgs() {
            assert!(
                org.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')),
                "{org}"
            );
        }
        assert!(wk.contains("eleutherai"));
        assert!(wk.contains("library"));
    }

    #[test]
    fn keys() {
        assert_eq!(plain("Qwen3.5-7B"), "qwen357b");
        assert_eq!(look("meta-IIama"), look("meta-llama"));
        assert_eq!(look("rneta"), look("meta"));
        assert_eq!(look("vvizard"), look("wizard"));
        assert_eq!(look("Q\u{0435}n"), look("Qen"));
        assert_eq!(core("Llama-3.1-8B-Instruct-GGUF"), "llama-3.1-8b");
        assert_eq!(core("reddit"), "reddit");
        assert!(is_swap("micorsoft", "microsoft"));
        assert!(!is_swap("abc", "abd"));
        assert_eq!(keyboard_slip("qwrn", "qwen"), Some(('r', 'e')));
        assert_eq!(keyboard_slip("qwpn", "qwen"), None);
        assert_eq!(keyboard_slip("qwrr", "qwen"), None);
    }

    #[test]
    fn hostile_input_is_harmless() {
        let wk = WellKnown::shipped();
        let ok = approved(APPROVED);
        for name in [
            "",
            "/",
            "//",
            "a/b/c/d",
            ":",
            "datasets/",
            &"x".repeat(10_000),
            "\u{202e}",
        ] {
            let _ = check(name, &ok, &wk);
        }
    }
}
