//! The README's configuration table and the example configuration agree: every
//! key the example shows (set or commented out) is documented in the README's row
//! for its section, and every section the README documents exists in the example.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository")
        .to_path_buf()
}

/// The README's sections as it names them (`[tenants.<id>]`,
/// `[tenants.<id>.payments.stripe]`), for a section of the example
/// (`[tenants.demo.providers.stripe]`, `[tenants.demo.payments.stripe]`,
/// `[tenants.demo.reconcile.stripe]`).
fn documented_as(section: &str) -> String {
    let parts: Vec<&str> = section.split('.').collect();
    match parts.as_slice() {
        ["tenants", _] | ["tenants", _, "providers", _] => "tenants.<id>".into(),
        ["tenants", _, "payments", provider] => format!("tenants.<id>.payments.{provider}"),
        ["tenants", _, "identity"] => "tenants.<id>.identity".into(),
        ["tenants", _, "raw_encryption"] => "tenants.<id>.raw_encryption".into(),
        ["tenants", _, "reconcile", _] => "tenants.<id>.reconcile.<provider>".into(),
        _ => section.to_string(),
    }
}

/// (section → keys) of the example configuration, commented-out ones included.
/// Tables whose keys are data, not settings (librdkafka properties, HubSpot
/// property maps), count as sections without keys.
fn example_keys() -> BTreeMap<String, BTreeSet<String>> {
    let text = std::fs::read_to_string(repo().join("storefold.example.toml"))
        .expect("storefold.example.toml");
    let section_re = regex::Regex::new(r"^#?\s*\[([a-z_.]+)\]\s*$").unwrap();
    let key_re = regex::Regex::new(r"^#?\s*([a-z_0-9]+)\s*=").unwrap();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(c) = section_re.captures(line) {
            section = c[1].to_string();
            out.entry(documented_as(&section)).or_default();
            continue;
        }
        let data_table = section.ends_with("properties");
        if let Some(c) = key_re.captures(line)
            && !section.is_empty()
            && !data_table
        {
            out.entry(documented_as(&section))
                .or_default()
                .insert(c[1].to_string());
        }
    }
    out
}

/// (section → row text) of the README's configuration table: the sections a row
/// is about (its first cell), and sub-tables it documents in its text
/// (`[kafka.properties]` in the `[kafka]` row); the first are also returned alone.
fn readme_rows() -> (BTreeMap<String, String>, BTreeSet<String>) {
    let text = std::fs::read_to_string(repo().join("README.md")).expect("README.md");
    let start = text
        .find("### Configuration")
        .expect("README has a Configuration section");
    let row_re = regex::Regex::new(r"`\[([a-z_.<>]+)\]`").unwrap();
    let mut out = BTreeMap::new();
    let mut rows = BTreeSet::new();
    for line in text[start..].lines().skip(1) {
        if line.starts_with("#") {
            break;
        }
        if !line.starts_with("| `[") {
            continue;
        }
        let first_cell = line.split('|').nth(1).unwrap_or("");
        for c in row_re.captures_iter(first_cell) {
            rows.insert(c[1].to_string());
            out.insert(c[1].to_string(), line.to_string());
        }
        for c in row_re.captures_iter(line) {
            out.entry(c[1].to_string())
                .or_insert_with(|| line.to_string());
        }
    }
    (out, rows)
}

#[test]
fn every_example_key_is_documented_in_the_readme_and_every_readme_section_exists() {
    let example = example_keys();
    let (readme, rows) = readme_rows();
    assert!(
        example.len() >= 12,
        "the example configuration was read: {example:?}"
    );
    let mut missing = Vec::new();
    for (section, keys) in &example {
        let Some(row) = readme.get(section) else {
            missing.push(format!("section [{section}] has no row"));
            continue;
        };
        for key in keys {
            if !row.contains(&format!("`{key}`")) {
                missing.push(format!("[{section}] {key}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "the README's configuration table lacks: {missing:?}"
    );
    let unknown: Vec<&String> = rows.iter().filter(|s| !example.contains_key(*s)).collect();
    assert!(
        unknown.is_empty(),
        "the README documents sections the example configuration does not show: {unknown:?}"
    );
}
