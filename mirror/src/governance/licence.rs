//! Licences: read from a model card's YAML front matter (`license: apache-2.0`) or recognised in
//! an Ollama licence layer's text.

/// The `license:` of a model card (`README.md`) front matter, lowercased.
pub fn licence_of_model_card(text: &str) -> Option<String> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "---" {
        return None;
    }
    for line in lines.take(500) {
        let line = line.trim_end();
        if line.trim() == "---" {
            return None;
        }
        if let Some(v) = line.strip_prefix("license:") {
            let v = v
                .trim()
                .trim_matches(|c| c == '"' || c == '\'')
                .to_ascii_lowercase();
            return (!v.is_empty()).then_some(v);
        }
    }
    None
}

/// A licence identifier for an Ollama licence layer's text, by its well-known opening words.
pub fn licence_of_text(text: &str) -> Option<String> {
    let head: String = text
        .chars()
        .take(4000)
        .collect::<String>()
        .to_ascii_lowercase();
    let known = [
        ("apache license", "apache-2.0"),
        ("mit license", "mit"),
        ("permission is hereby granted, free of charge", "mit"),
        ("llama 3.1 community license", "llama3.1"),
        ("llama 3.2 community license", "llama3.2"),
        ("llama 3.3 community license", "llama3.3"),
        ("llama 3 community license", "llama3"),
        ("llama 2 community license", "llama2"),
        ("gemma terms of use", "gemma"),
        ("creative commons attribution-noncommercial", "cc-by-nc-4.0"),
        ("creative commons attribution 4.0", "cc-by-4.0"),
        ("bsd 3-clause", "bsd-3-clause"),
        ("gnu general public license", "gpl-3.0"),
    ];
    known
        .iter()
        .find(|(needle, _)| head.contains(needle))
        .map(|(_, id)| (*id).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_cards() {
        assert_eq!(
            licence_of_model_card("---\nlanguage: en\nlicense: Apache-2.0\n---\n# x"),
            Some("apache-2.0".into())
        );
        assert_eq!(
            licence_of_model_card("---\nlicense: \"mit\"\n---\n"),
            Some("mit".into())
        );
        assert_eq!(
            licence_of_model_card("# no front matter\nlicense: mit\n"),
            None
        );
        assert_eq!(
            licence_of_model_card("---\ntags: []\n---\nlicense: mit"),
            None
        );
        assert_eq!(
            licence_of_text("MIT License\n\nCopyright"),
            Some("mit".into())
        );
        assert_eq!(licence_of_text("whatever"), None);
    }
}
