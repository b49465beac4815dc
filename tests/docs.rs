//! The one table of `ESM_*` settings (`kafka_esm::config::ENV_VARS`) against what users read and
//! deploy: the README lists every variable with its default, and the README, the docs, both
//! templates, the CDK construct and the scripts name no variable the poller does not read.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;

use kafka_esm::config::ENV_VARS;

/// `ESM_…` words that are not settings.
const NOT_SETTINGS: [&str; 1] = ["ESM_CONFIG_NOT_VALID"];

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn esm_words(text: &str) -> BTreeSet<String> {
    let mut words = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("ESM_") {
        let start = i + at;
        let before = start.checked_sub(1).map(|b| bytes[b]);
        let mut end = start + 4;
        while end < bytes.len()
            && (bytes[end].is_ascii_uppercase() || bytes[end].is_ascii_digit() || bytes[end] == b'_')
        {
            end += 1;
        }
        let word = text[start..end].trim_end_matches('_');
        if !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') && word.len() > 4 {
            words.insert(word.to_owned());
        }
        i = end;
    }
    words
}

fn files(dir: &Path, ext: &[&str], out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if path.is_dir() {
            if !matches!(name, "node_modules" | "cdk.out" | "target" | ".git") {
                files(&path, ext, out);
            }
        } else if ext.iter().any(|e| name.ends_with(e)) {
            out.push(path);
        }
    }
}

#[test]
fn the_readme_lists_every_setting_with_its_default() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    for var in ENV_VARS {
        let row = format!("| `{}` | {} |", var.name, var.default);
        assert!(readme.contains(&row), "README.md has no settings row starting `{row}`");
    }
}

#[test]
fn nothing_names_a_setting_the_poller_does_not_read() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let known: BTreeSet<&str> = ENV_VARS.iter().map(|v| v.name).chain(NOT_SETTINGS).collect();
    let mut paths = vec![root.join("README.md"), root.join("template.yaml"), root.join("template-self-managed.yaml")];
    files(&root.join("docs"), &[".md"], &mut paths);
    files(&root.join("infra"), &[".ts", ".md", ".json", ".yaml"], &mut paths);
    files(&root.join("scripts"), &[".sh"], &mut paths);
    files(&root.join("functions"), &[".rs"], &mut paths);
    let mut unknown = Vec::new();
    for path in paths {
        for word in esm_words(&read(&path)) {
            if !known.contains(word.as_str()) {
                unknown.push(format!("{}: {word}", path.strip_prefix(root).unwrap_or(&path).display()));
            }
        }
    }
    assert!(unknown.is_empty(), "names that are not in kafka_esm::config::ENV_VARS:\n{}", unknown.join("\n"));
}

#[test]
fn the_template_defaults_are_settings_the_poller_accepts() {
    // Every `ESM_X: value` (SAM) pair in the templates, parsed as the poller would.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for template in ["template.yaml", "template-self-managed.yaml"] {
        let Ok(text) = std::fs::read_to_string(root.join(template)) else {
            assert_ne!(template, "template.yaml", "template.yaml is missing");
            continue;
        };
        let pairs: Vec<(String, String)> = text
            .lines()
            .filter_map(|line| {
                let (key, value) = line.trim().split_once(':')?;
                let value = value.trim().trim_matches(['"', '\'']);
                (key.starts_with("ESM_") && !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| (key.to_owned(), value.to_owned()))
            })
            .collect();
        let settings = kafka_esm::config::Settings::from_lookup(|name| {
            pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        });
        assert!(settings.is_ok(), "{template}: {settings:?} from {pairs:?}");
    }
}
